"""The training loop: AdamW on the adapter only, warmup, clipping, per-step log, atomic resumable checkpoints."""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from align_data.errors import AlignDataError
from align_data.trainer.checkpoint import (
    LOG_FILE,
    STATE_FILE,
    load_adapter,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    truncate_log,
)
from align_data.trainer.config import RESUMABLE_CHANGES, TrainConfig
from align_data.trainer.data import ExampleOrder, Featurizer, collate, load_examples
from align_data.trainer.model import FrozenModels, SpeechLM, build_adapter, load_frozen_models, resolve_device

__all__ = ["train", "load_adapter", "lr_at"]

log = logging.getLogger(__name__)


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of 1-based ``step``: linear warmup over ``warmup`` steps, then constant (resume-invariant)."""
    return config.lr * min(1.0, step / (config.warmup + 1))


def _check_resumable(saved: dict[str, Any], config: TrainConfig, out_dir: Path) -> None:
    """Refuse to resume with settings that would change what the checkpoint means."""
    old = TrainConfig.model_validate(saved)
    changed = [f"{k}: {getattr(old, k)!r} → {getattr(config, k)!r}" for k in TrainConfig.model_fields
               if k not in RESUMABLE_CHANGES and getattr(old, k) != getattr(config, k)]
    if changed:
        raise AlignDataError(f"{out_dir}: cannot resume with changed settings ({'; '.join(changed)}); use the "
                             "checkpoint's settings or a new --out folder")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _last_logged_loss(path: Path) -> float | None:
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return json.loads(lines[-1])["loss"] if lines else None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch CPU threads (None leaves it), restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(shards_dir: Path, out_dir: Path, config: TrainConfig, *, resume: bool = False, progress: bool = True,
          models: FrozenModels | None = None) -> dict[str, Any]:
    """Train the adapter on a build's shards into ``out_dir``; ``resume`` continues its checkpoint to ``config.steps``.

    ``models`` reuses already loaded frozen models (they must be the ones ``config.whisper``/``config.llm`` name).
    Returns steps, start_step, losses (this run), final_loss, seconds_per_step (mean, first step excluded when
    there are more), trainable_params, examples, counts (rows/targets skipped by reason), peak_rss_mb, out_dir.
    """
    shards_dir, out_dir = Path(shards_dir), Path(out_dir)
    if not resume and (out_dir / STATE_FILE).exists():
        raise AlignDataError(f"{out_dir} already holds a checkpoint; pass --resume to continue it "
                             "or choose a new --out")
    with torch_threads(config.threads):
        return _train(shards_dir, out_dir, config, resume=resume, progress=progress, models=models)


def _train(shards_dir: Path, out_dir: Path, config: TrainConfig, *, resume: bool, progress: bool,
           models: FrozenModels | None) -> dict[str, Any]:
    """The body of ``train``, run under the configured thread count."""
    device, dtype = resolve_device(config)
    checkpoint = load_checkpoint(out_dir, device) if resume else None
    if checkpoint is not None:
        _check_resumable(checkpoint[0]["config"], config, out_dir)
    models = models or load_frozen_models(config, device, dtype)
    examples, counts = load_examples(shards_dir, models.tokenizer, max_target_tokens=config.max_target_tokens,
                                     tasks=config.tasks, split=config.split)
    skipped = {k: v for k, v in counts.items() if k.startswith("skipped_") and v}
    if skipped:
        log.warning("train: %d examples from %d rows; skipped %s", len(examples), counts["rows"], skipped)
    adapter = checkpoint[1] if checkpoint is not None else build_adapter(models.encoder, models.lm, config.seed)
    adapter = adapter.to(device=device, dtype=torch.float32)
    model = SpeechLM(models.encoder, adapter, models.lm).train()
    params = [p for p in adapter.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    if checkpoint is not None:
        state, _, optimizer_state = checkpoint
        optimizer.load_state_dict(optimizer_state)
        set_rng_state(state["rng"])
        start = int(state["step"])
        truncate_log(out_dir / LOG_FILE, start)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / LOG_FILE).unlink(missing_ok=True)
    featurize = Featurizer(models.extractor, config.max_audio_s)
    order = ExampleOrder(len(examples), config.batch_size, config.seed)
    meta = {"config": config.model_dump(), "counts": counts, "trainable_params": trainable,
            "shards_dir": str(shards_dir)}

    losses: list[float] = []
    seconds: list[float] = []
    bar = tqdm(total=config.steps, initial=start, unit="step", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, desc="train")
    with open(out_dir / LOG_FILE, "a", encoding="utf-8") as log_file, bar:
        for step in range(start + 1, config.steps + 1):
            began = time.perf_counter()
            lr = lr_at(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = collate([examples[i] for i in order.batch(step - 1)], featurize)
            loss = model(batch)
            if not torch.isfinite(loss):
                raise AlignDataError(f"loss is {loss.item()} at step {step}; lower lr (now {lr:g}) or set grad_clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            limit = config.grad_clip if config.grad_clip is not None else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
            optimizer.step()
            elapsed = time.perf_counter() - began
            losses.append(loss.item())
            seconds.append(elapsed)
            log_file.write(json.dumps({"step": step, "loss": losses[-1], "lr": lr, "seconds": round(elapsed, 4),
                                       "grad_norm": grad_norm, "tokens": sum(len(t) for t in batch.targets),
                                       "examples": list(batch.keys)}) + "\n")
            log_file.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if progress and step % config.log_every == 0:
                bar.write(f"step {step}/{config.steps} loss {losses[-1]:.4f} lr {lr:.2e} {elapsed:.2f}s")
            if step % config.save_every == 0 or step == config.steps:
                save_checkpoint(out_dir, adapter, optimizer, step, meta)
    timed = seconds[1:] if len(seconds) > 1 else seconds
    return {
        "steps": max(start, config.steps),
        "start_step": start,
        "losses": losses,
        "final_loss": losses[-1] if losses else _last_logged_loss(out_dir / LOG_FILE),
        "seconds_per_step": sum(timed) / len(timed) if timed else 0.0,
        "trainable_params": trainable,
        "examples": len(examples),
        "counts": counts,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "out_dir": str(out_dir),
    }
