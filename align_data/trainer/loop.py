"""The training loop: AdamW on the adapter only, gradient accumulation, warmup + cosine/constant schedule, optional
KL to the text-input distribution, clipping, per-step metrics, atomic checkpoints that resume exactly."""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from tqdm import tqdm

from align_data.errors import AlignDataError
from align_data.schemas import Record
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
from align_data.trainer.data import Batch, Example, Featurizer, as_transcript, collate, record_examples
from align_data.trainer.distributed import (
    World,
    barrier,
    join_world,
    leave_world,
    local_device,
    sum_across,
    sum_gradients,
)
from align_data.trainer.model import (
    EncoderCache,
    FrozenModels,
    SpeechLM,
    build_adapter,
    load_frozen_models,
    resolve_device,
)
from align_data.trainer.step_log import StepLog, check_sinks
from align_data.trainer.stream import batch_stream, mixture_weights, scan_shards

__all__ = ["accumulate", "load_adapter", "lr_at", "train"]

log = logging.getLogger(__name__)


def lr_at(config: TrainConfig, step: int) -> float:
    """Learning rate of 1-based ``step``: linear warmup to lr at step warmup+1, then constant, or cosine down to
    lr×min_lr_ratio at decay_steps (or steps) and flat after; depends only on the config (resume-invariant)."""
    if step <= config.warmup or config.schedule == "constant":
        return config.lr * min(1.0, step / (config.warmup + 1))
    horizon = config.decay_steps or config.steps
    progress = min(1.0, (step - config.warmup - 1) / max(1, horizon - config.warmup - 1))
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _check_resumable(saved: dict[str, Any], config: TrainConfig, out_dir: Path) -> None:
    """Refuse to resume with settings that would change what the checkpoint means."""
    old = TrainConfig.model_validate(saved)
    changed = [f"{k}: {getattr(old, k)!r} → {getattr(config, k)!r}" for k in TrainConfig.model_fields
               if k not in RESUMABLE_CHANGES | {"decay_steps"} and getattr(old, k) != getattr(config, k)]
    if config.schedule == "cosine" and (old.decay_steps or old.steps) != (config.decay_steps or config.steps):
        changed.append(f"cosine horizon (decay_steps or steps): {old.decay_steps or old.steps} → "
                       f"{config.decay_steps or config.steps}; set decay_steps={old.decay_steps or old.steps} to "
                       "keep the schedule")
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


@dataclass(frozen=True, slots=True)
class StepLosses:
    """Loss sums of one optimizer step over its target tokens; ``loss`` and ``kl`` are the per-token means."""

    nll_sum: float
    kl_sum: float | None
    tokens: int

    @property
    def loss(self) -> float:
        """Mean target-token NLL (what eval reports)."""
        return self.nll_sum / self.tokens

    @property
    def kl(self) -> float | None:
        return None if self.kl_sum is None else self.kl_sum / self.tokens


def accumulate(model: SpeechLM, micro: list[Batch], text_micro: list[Batch] | None = None,
               kl_weight: float = 0.0, step_tokens: int | None = None) -> StepLosses:
    """Backpropagate one optimizer step's micro-batches: each adds its token sums divided by the step's total
    target tokens (``step_tokens``, default these micro-batches' own), so the gradient equals that of one batch
    holding them all. Returns this process's sums."""
    tokens = sum(len(t) for batch in micro for t in batch.targets)
    step_tokens = step_tokens or tokens
    nll_total, kl_total = 0.0, 0.0
    for i, batch in enumerate(micro):
        nll, kl = model.token_losses(batch, text_micro[i] if text_micro else None)
        loss = nll.sum() / step_tokens
        if kl is not None:
            loss = loss + kl_weight * kl.sum() / step_tokens
            kl_total += float(kl.detach().sum())
        if not torch.isfinite(loss):
            raise AlignDataError(f"the loss is {loss.item()}; lower lr or set grad_clip")
        loss.backward()
        nll_total += float(nll.detach().sum())
    return StepLosses(nll_total, kl_total if text_micro else None, tokens)


def train(shards_dir: Path, out_dir: Path, config: TrainConfig, *, resume: bool = False, progress: bool = True,
          models: FrozenModels | None = None) -> dict[str, Any]:
    """Train the adapter on a build's shards into ``out_dir``; ``resume`` continues its checkpoint to ``config.steps``.

    ``models`` reuses already loaded frozen models (they must be the ones ``config.whisper``/``config.llm`` name).
    A new run seeds torch's global generator from ``config.seed``; a resumed one restores the saved state.
    Returns steps, start_step, losses (this run), final_loss, seconds_per_step (mean, first step excluded when
    there are more), trainable_params, examples (usable in the shards), examples_per_recipe, mixture (weights
    used), counts (rows/targets skipped by reason), peak_rss_mb, peak_gpu_mb (torch's peak allocation on the
    GPU, None on CPU), encoder_cache (clips and MiB held, hits, misses; None when off), out_dir.
    """
    shards_dir, out_dir = Path(shards_dir), Path(out_dir)
    if not resume and (out_dir / STATE_FILE).exists():
        raise AlignDataError(f"{out_dir} already holds a checkpoint; pass --resume to continue it "
                             "or choose a new --out")
    check_sinks(config.metrics)
    with torch_threads(config.threads):
        return _train(shards_dir, out_dir, config, resume=resume, progress=progress, models=models)


def _train(shards_dir: Path, out_dir: Path, config: TrainConfig, *, resume: bool, progress: bool,
           models: FrozenModels | None) -> dict[str, Any]:
    """The body of ``train``, run under the configured thread count."""
    device, dtype = resolve_device(config)
    owned = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    world = join_world(device)
    try:
        return _train_in_world(shards_dir, out_dir, config, world, local_device(device, world), dtype,
                               resume=resume, progress=progress, models=models)
    finally:
        leave_world(world, owned=owned)


def _train_in_world(shards_dir: Path, out_dir: Path, config: TrainConfig, world: World, device: torch.device,
                    dtype: torch.dtype, *, resume: bool, progress: bool, models: FrozenModels | None) -> dict[str, Any]:
    """Train as process ``world.rank``: every process draws every micro-batch of a step (same stream, same
    position) and runs its own ``grad_accum`` of them; only the main process logs and writes."""
    checkpoint = load_checkpoint(out_dir, device) if resume else None
    if checkpoint is not None:
        _check_resumable(checkpoint[0]["config"], config, out_dir)
        saved_world = int(checkpoint[0].get("world_size", 1))
        if saved_world != world.size:
            raise AlignDataError(f"{out_dir}: the checkpoint was trained by {saved_world} process(es) and this run "
                                 f"has {world.size}; a step is WORLD_SIZE × grad_accum micro-batches, so resume "
                                 f"with {saved_world} (torchrun --nproc_per_node) or train into a new --out folder")
        if "data" not in checkpoint[0]:
            raise AlignDataError(f"{out_dir}: the checkpoint has no data position (written by an older trainer); "
                                 "train into a new --out folder")
    index = scan_shards(shards_dir, tasks=config.tasks, split=config.split)
    mixture = mixture_weights(index, config.task_weights)
    skipped = {k: v for k, v in index.counts.items() if k.startswith("skipped_") and v}
    if skipped and world.main:
        log.warning("train: %d examples from %d rows; skipped %s", index.counts["examples"], index.counts["rows"],
                    skipped)
    models = models or load_frozen_models(config, device, dtype)

    def make(record: Record) -> list[Example]:
        return record_examples(record, models.tokenizer, Counter(), max_target_tokens=config.max_target_tokens,
                               tasks=config.tasks, split=config.split)

    stream = batch_stream(index, make, task_weights=config.task_weights, batch_size=config.batch_size,
                          bucket_batches=config.bucket_batches, shuffle_window=config.shuffle_window, seed=config.seed)
    adapter = checkpoint[1] if checkpoint is not None else build_adapter(models.encoder, models.lm, config.seed, config)
    adapter = adapter.to(device=device, dtype=torch.float32)  # fp32 master weights, also beside bf16 frozen models
    cache = EncoderCache.for_config(config)
    model = SpeechLM(models.encoder, adapter, models.lm, cache).train()
    params = [p for p in adapter.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    if checkpoint is not None:
        state, _, optimizer_state = checkpoint
        optimizer.load_state_dict(optimizer_state)
        set_rng_state(state["rng"])
        stream.restore(state["data"])
        start = int(state["step"])
        if world.main:
            truncate_log(out_dir / LOG_FILE, start)
    else:
        # torch's global generator from the seed: nothing in the step draws from it yet, but the checkpoint saves its
        # state, and a run started from the seed then writes the same bytes whatever ran before it in the process
        torch.manual_seed(config.seed)
        if world.main:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / LOG_FILE).unlink(missing_ok=True)
    featurize = Featurizer(models.extractor, config.max_audio_s)
    meta = {"config": config.model_dump(), "counts": index.counts, "examples_per_recipe": index.examples,
            "mixture": mixture, "trainable_params": trainable, "adapter": adapter.shape_metadata(),
            "shards_dir": str(shards_dir), "world_size": world.size}

    losses: list[float] = []
    seconds: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(total=config.steps, initial=start, unit="step", file=sys.stderr, disable=not (progress and world.main),
               dynamic_ncols=True, desc="train")
    with StepLog(out_dir / LOG_FILE, config.metrics, start, enabled=world.main) as step_log, bar:
        for step in range(start + 1, config.steps + 1):
            began = time.perf_counter()
            lr = lr_at(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            drawn = [stream.next() for _ in range(config.grad_accum * world.size)]
            mine = drawn[world.rank * config.grad_accum: (world.rank + 1) * config.grad_accum]
            micro = [collate(examples, featurize) for examples in mine]
            text_micro = ([collate([as_transcript(e) for e in examples], featurize) for examples in mine]
                          if config.kl_weight > 0 else None)
            step_tokens = sum(len(e.target_ids) for examples in drawn for e in examples)
            optimizer.zero_grad(set_to_none=True)
            try:
                own = accumulate(model, micro, text_micro, config.kl_weight, step_tokens)
            except AlignDataError as exc:
                raise AlignDataError(f"step {step} (lr {lr:g}): {exc}") from exc
            nll_sum, kl_sum = sum_across(world, [own.nll_sum, own.kl_sum or 0.0], device)
            step_losses = StepLosses(nll_sum, None if own.kl_sum is None else kl_sum, step_tokens)
            sum_gradients(world, params)
            limit = config.grad_clip if config.grad_clip is not None else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
            optimizer.step()
            elapsed = time.perf_counter() - began
            count = sum(len(examples) for examples in drawn)
            losses.append(step_losses.loss)
            seconds.append(elapsed)
            step_log.write({"step": step, "loss": step_losses.loss, "kl": step_losses.kl, "lr": lr,
                            "seconds": round(elapsed, 4), "grad_norm": grad_norm, "tokens": step_losses.tokens,
                            "examples_per_s": round(count / elapsed, 3),
                            "recipes": dict(Counter(e.recipe for examples in drawn for e in examples)),
                            "examples": [e.key for examples in drawn for e in examples]})
            bar.update(1)
            bar.set_postfix(loss=f"{step_losses.loss:.4f}", ex_s=f"{count / elapsed:.2f}")
            if progress and step % config.log_every == 0:
                bar.write(f"step {step}/{config.steps} loss {step_losses.loss:.4f} lr {lr:.2e} {elapsed:.2f}s")
            if (step % config.save_every == 0 or step == config.steps) and world.main:
                save_checkpoint(out_dir, adapter, optimizer, step, {**meta, "data": stream.state()})
    barrier(world)  # the other processes return once the last checkpoint is whole
    timed = seconds[1:] if len(seconds) > 1 else seconds
    return {
        "steps": max(start, config.steps),
        "start_step": start,
        "losses": losses,
        "final_loss": losses[-1] if losses else _last_logged_loss(out_dir / LOG_FILE),
        "seconds_per_step": sum(timed) / len(timed) if timed else 0.0,
        "trainable_params": trainable,
        "examples": index.counts["examples"],
        "examples_per_recipe": index.examples,
        "mixture": mixture,
        "counts": index.counts,
        "encoder_cache": cache.stats() if cache is not None else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        "out_dir": str(out_dir),
    }
