"""Settings of one adapter training run (flags, --set, or a TOML file); saved in the checkpoint so a resume can
check it matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from align_data.errors import AlignDataError

# Fields that may change between a run and its resume; every other field must match the checkpoint.
RESUMABLE_CHANGES = frozenset({"steps", "log_every", "save_every", "threads", "device", "metrics",
                               "encoder_cache_mb"})
Recipe = Literal["continuation", "description", "interleaved", "mtbi"]


class TrainConfig(BaseModel):
    """What to train, how long, and on which models and device."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1, description="Total optimizer steps (a resume continues up to this total).")
    batch_size: int = Field(2, ge=1, description="Examples per micro-batch; an optimizer step takes `grad_accum` "
                            "micro-batches.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches whose gradients are summed into one optimizer "
                            "step; the loss is the mean over all their target tokens, as one batch of "
                            "batch_size×grad_accum.")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate, reached after `warmup` steps.")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="After warmup: 'constant' keeps lr; 'cosine' decays it to lr×min_lr_ratio at "
        "decay_steps.")
    decay_steps: int | None = Field(None, ge=1, description="Step at which the cosine schedule reaches its floor; "
                                    "None = steps. Set it when a run will be resumed to more steps.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on the adapter parameters.")
    warmup: int = Field(0, ge=0, description="Steps of linear learning-rate warmup from lr/(warmup+1) to lr.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the adapter gradient norm to this value; None = off.")
    kl_weight: float = Field(0.0, ge=0, description="Weight of the KL divergence from the LM's own next-token "
                             "distribution given the transcript as text to its distribution given speech, on the "
                             "target tokens (BLSP-Emo); 0 = off (saves the text-input forward pass).")
    seed: int = Field(0, description="Seeds the adapter initialisation, the task mixture and the shuffling.")
    adapter: Literal["conv", "qformer"] = Field(
        "conv", description="'conv': BLSP's 3× Conv1d k5 s2 + GLU, Linear, LayerNorm (8× fewer frames); 'qformer': "
        "DeSTA2-style learned queries cross-attending to the encoder states (a fixed number of vectors per clip).")
    qformer_queries: int = Field(64, ge=1, description="Q-Former: learned queries, i.e. LM vectors per clip.")
    qformer_layers: int = Field(2, ge=1, description="Q-Former: transformer layers (self- and cross-attention).")
    qformer_heads: int = Field(8, ge=1, description="Q-Former: attention heads; must divide the encoder width.")
    task_weights: dict[Recipe, float] | None = Field(
        None, description="Mixture of the build's recipes (a row's task: continuation, description, interleaved, "
        "mtbi) by relative weight, drawn per example from the seed; None = as they occur in the shards. A weight "
        "for a recipe with no usable rows is an error.")
    shuffle_window: int = Field(8, ge=1, description="Parquet row groups (a shard is usually one) read together "
                                "and shuffled as one buffer; memory grows with it. Row-group order is reshuffled "
                                "each epoch.")
    bucket_batches: int = Field(8, ge=1, description="Length bucketing: draw this many micro-batches of examples, "
                                "sort them by length, cut into micro-batches (less padding) and shuffle those; "
                                "1 = off.")
    log_every: int = Field(10, ge=1, description="Print the loss every N steps (train_log.jsonl gets every step).")
    save_every: int = Field(50, ge=1, description="Checkpoint every N steps; the last step is always saved.")
    metrics: list[Literal["jsonl", "tensorboard"]] = Field(
        default_factory=lambda: ["jsonl"], description="Where per-step metrics go: train_log.jsonl (always written; "
        "resume needs it) and/or TensorBoard event files in OUT/tensorboard (needs the `tensorboard` package).")
    max_audio_s: float = Field(30.0, gt=0, le=30.0,
                               description="Clips longer than this are cut to it (Whisper reads at most 30 s).")
    max_target_tokens: int = Field(32, ge=2, description="Target tokens per example, eos included; longer responses "
                                   "are cut (and then get no eos).")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch's default (one per core). "
                                "On an idle 2-core machine 2 threads stepped 1.8x faster than 1; on one busy with "
                                "other jobs, use fewer than its cores (there 2 threads ran several times slower).")
    encoder_cache_mb: int = Field(2048, ge=0, description="Memory (MiB, on the training device) for the frozen "
                                  "Whisper encoder's outputs per clip, read again from the second epoch on instead "
                                  "of re-encoding; 0 = off. A clip of 5 s takes ~0.5 MiB (whisper-base). The "
                                  "values are the same either way (each clip is encoded alone).")
    whisper: str = Field("embedded", description="HF Whisper folder, or 'embedded' for the prepared whisper-base.")
    llm: str = Field("embedded", description="HF causal-LM folder (with tokenizer), or 'embedded' for the prepared "
                     "Gemma 3 270M.")
    tasks: list[str] | None = Field(None, description="Train only on targets of these tasks (a target's task: "
                                    "an MTBI target names its MTBI task); None = all tasks.")
    split: str | None = Field("train", description="Train only on rows of this split; None = every split.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' picks cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Dtype of the frozen models: 'auto' = float32 on cpu, bfloat16 on cuda (run under "
        "autocast); bfloat16 is refused on cpu (too slow there). The adapter's weights and optimizer stay float32.")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.task_weights is not None and not any(w > 0 for w in self.task_weights.values()):
            raise ValueError("task_weights needs at least one positive weight")
        if any(w < 0 for w in (self.task_weights or {}).values()):
            raise ValueError("task_weights must not be negative")
        if "jsonl" not in self.metrics:
            raise ValueError("metrics must include 'jsonl' (resume and eval read train_log.jsonl)")
        return self


def load_train_config(path: Path | None, values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a TOML file (top-level keys or a [train] table), then ``values`` on top of it."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise AlignDataError(f"{path}: cannot read the train config ({exc})") from exc
        data = data.get("train", data) if set(data) <= {"train"} else data
    data = {**data, **values}
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise AlignDataError("invalid train settings: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())) from exc
