"""Held-out target loss with speech input vs the same examples with their transcripts as text input."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from align_data.errors import AlignDataError
from align_data.trainer.checkpoint import STATE_FILE, load_adapter
from align_data.trainer.config import TrainConfig
from align_data.trainer.data import Featurizer, as_transcript, collate, load_examples
from align_data.trainer.loop import torch_threads
from align_data.trainer.model import FrozenModels, SpeechLM, load_frozen_models, resolve_device


def evaluate(shards_dir: Path, ckpt_dir: Path, *, split: str | None = None, tasks: list[str] | None = None,
             max_examples: int | None = None, batch_size: int = 4, device: str = "auto", threads: int | None = None,
             progress: bool = True, models: FrozenModels | None = None) -> dict[str, Any]:
    """Mean per-token target loss of a checkpoint on ``shards_dir``, from speech and from transcripts.

    ``split`` None reads every row (builds mark all rows "train" unless told otherwise). The gap
    ``speech_loss - text_loss`` is what alignment training shrinks. ``threads`` None keeps the checkpoint's.
    Returns totals and a per-task breakdown.
    """
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / STATE_FILE).is_file():
        raise AlignDataError(f"{ckpt_dir} has no {STATE_FILE}; pass the --out folder of a finished `train`")
    saved = json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8"))
    config = TrainConfig.model_validate({**saved["config"], "device": device,
                                         "threads": threads or saved["config"].get("threads")})
    with torch_threads(config.threads):
        return _evaluate(shards_dir, ckpt_dir, config, saved["step"], split=split, tasks=tasks,
                         max_examples=max_examples, batch_size=batch_size, progress=progress, models=models)


def _evaluate(shards_dir: Path, ckpt_dir: Path, config: TrainConfig, step: int, *, split: str | None,
              tasks: list[str] | None, max_examples: int | None, batch_size: int, progress: bool,
              models: FrozenModels | None) -> dict[str, Any]:
    """The body of ``evaluate``, run under the checkpoint's thread count."""
    torch_device, dtype = resolve_device(config)
    models = models or load_frozen_models(config, torch_device, dtype)
    examples, counts = load_examples(shards_dir, models.tokenizer, max_target_tokens=config.max_target_tokens,
                                     tasks=tasks, split=split)
    examples = examples[:max_examples] if max_examples else examples
    model = SpeechLM(models.encoder, load_adapter(ckpt_dir, torch_device), models.lm).eval()
    featurize = Featurizer(models.extractor, config.max_audio_s)
    sums: dict[str, dict[str, float]] = defaultdict(lambda: {"speech": 0.0, "text": 0.0, "tokens": 0, "examples": 0})
    starts = range(0, len(examples), batch_size)
    for start in tqdm(starts, desc="eval", unit="batch", file=sys.stderr, disable=not progress):
        chunk = examples[start: start + batch_size]
        with torch.no_grad():
            speech = model.token_nll(collate(chunk, featurize))
            text = model.token_nll(collate([as_transcript(e) for e in chunk], featurize))
        offset = 0
        for ex in chunk:
            n = len(ex.target_ids)
            for key in (ex.task, "all"):
                sums[key]["speech"] += float(speech[offset: offset + n].sum())
                sums[key]["text"] += float(text[offset: offset + n].sum())
                sums[key]["tokens"] += n
                sums[key]["examples"] += 1
            offset += n

    def summary(s: dict[str, float]) -> dict[str, float]:
        speech_loss, text_loss = s["speech"] / s["tokens"], s["text"] / s["tokens"]
        return {"speech_loss": speech_loss, "text_loss": text_loss, "gap": speech_loss - text_loss,
                "tokens": int(s["tokens"]), "examples": int(s["examples"])}

    total = summary(sums.pop("all"))
    return {**total, "step": step, "per_task": {task: summary(s) for task, s in sorted(sums.items())},
            "counts": counts}
