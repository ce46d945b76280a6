"""Settings of one adapter training run; saved in the checkpoint so a resume can check it matches."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Fields that may change between a run and its resume; every other field must match the checkpoint.
RESUMABLE_CHANGES = frozenset({"steps", "log_every", "save_every", "threads", "device"})


class TrainConfig(BaseModel):
    """What to train, how long, and on which models and device."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1, description="Total optimizer steps (a resume continues up to this total).")
    batch_size: int = Field(2, ge=1, description="Examples per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate, reached after `warmup` steps, then constant.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the adapter parameters.")
    warmup: int = Field(0, ge=0, description="Steps of linear learning-rate warmup from lr/(warmup+1) to lr.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the adapter gradient norm to this value; None = off.")
    seed: int = Field(0, description="Seeds the adapter initialisation and the per-epoch shuffling of examples.")
    log_every: int = Field(10, ge=1, description="Print the loss every N steps (train_log.jsonl gets every step).")
    save_every: int = Field(50, ge=1, description="Checkpoint every N steps; the last step is always saved.")
    max_audio_s: float = Field(30.0, gt=0, le=30.0,
                               description="Clips longer than this are cut to it (Whisper reads at most 30 s).")
    max_target_tokens: int = Field(32, ge=2, description="Target tokens per example, eos included; longer responses "
                                   "are cut (and then get no eos).")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch's default (one per core). "
                                "On a busy machine use fewer: 2 threads on 2 shared cores ran ~8x slower than 1.")
    whisper: str = Field("embedded", description="HF Whisper folder, or 'embedded' for the prepared whisper-base.")
    llm: str = Field("embedded", description="HF causal-LM folder (with tokenizer), or 'embedded' for the prepared "
                     "Gemma 3 270M.")
    tasks: list[str] | None = Field(None, description="Train only on targets of these tasks; None = all tasks.")
    split: str | None = Field("train", description="Train only on rows of this split; None = every split.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' picks cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Dtype of the frozen models: 'auto' = float32 on cpu, bfloat16 on cuda; bfloat16 is "
        "refused on cpu (too slow there). The adapter and its optimizer stay float32.")
