"""``build``: check the plan, prepare the output folder, run the shards, write the manifest."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from align_data.config import BuildConfig
from align_data.errors import AlignDataError, ServiceUnavailable
from align_data.faults import crash_point
from align_data.pipeline.dedup import with_cross_shard_drops
from align_data.pipeline.manifest import load_sidecar, verify_shard, write_manifest
from align_data.pipeline.plan import ShardSpec, plan_shards
from align_data.pipeline.runners import run_local, run_ray, shard_batches
from align_data.pipeline.stages import build_stages, check_chain
from align_data.storage import Store, as_store

OWNED = ("shards", "errors", "filtered", "manifest.json", "config.json", "plan.json")


@dataclass(slots=True)
class BuildSummary:
    """What a build did: shards planned, skipped as already complete, written and failed."""

    out_dir: str | Path
    planned: int
    skipped: int
    written: int
    failed: dict[int, str] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    seconds: float = 0.0


def prepare_out_dir(out: Store | str | Path, config: BuildConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a non-empty folder needs --resume (same config) or --overwrite."""
    out = as_store(out, config.storage.options)
    if resume and overwrite:
        raise AlignDataError("--resume and --overwrite contradict each other: choose one")
    if out.isfile():
        raise AlignDataError(f"--out {out} is a file, not a folder")
    if out.is_empty():
        return
    if overwrite:
        for name in OWNED:
            out.remove(name)
        return
    if not resume:
        raise AlignDataError(f"{out} is not empty: pass --resume to continue that build, "
                             "--overwrite to replace it, or choose another --out")
    if not out.exists("config.json"):
        raise AlignDataError(f"--resume: {out} has no config.json, so it is not an align-data build")
    old_hash = json.loads(out.read_text("config.json")).get("config_hash")
    if old_hash != config.hash():
        raise AlignDataError(f"--resume: the config changed since {out} was started "
                             f"(hash {old_hash} → {config.hash()}); use --overwrite or a new --out")
    remove_temp_files(out)


def remove_temp_files(out: Store | str | Path) -> list[str]:
    """Delete the temporary files of writes that a killed process left (never seen by readers: the
    shard they belonged to has no sidecar yet, so it is redone). An upload leaves none in the store."""
    out = as_store(out)
    leftovers = out.temp_leftovers()
    for rel in leftovers:
        out.remove(rel)
    return leftovers


def check_writable(out: Store | str | Path) -> None:
    """Create ``out`` and prove a file can be written there, before any work is done."""
    as_store(out).check_writable()


def preflight(config: BuildConfig) -> list[str]:
    """Fail in the first second: stage chain, packages, engines, and the LLM model folder. Returns the stage
    names in pipeline order."""
    stages = build_stages(config)
    check_chain(stages)
    from align_data.stages.tts.stage import engine_for

    for backend in sorted({v.backend for v in config.tts.voices}):
        engine_for(backend, config.tts).check()  # installed? (loading waits for the workers)
    needs_llm = any(config.interleave.task_weights.get(t, 0) > 0 for t in ("continuation", "description", "mtbi"))
    if needs_llm and config.llm.backend in ("transformers", "vllm"):
        from align_data.stages.targets.transformers_client import resolve_model

        resolve_model(config.llm.model)  # prepares the embedded model once, on the driver
    elif needs_llm and config.llm.backend == "ctranslate2":
        from align_data.stages.targets.ctranslate2_client import resolve_ct2_model

        resolve_ct2_model(config.llm.model, config.llm.quantization)  # converted once, on the driver
    if config.quality.enabled:  # the ASR gate's Whisper: prepared once here, a bad path fails now
        from align_data.stages.quality.asr import resolve_whisper

        resolve_whisper(config.quality.model)
    return ["source"] + [stage.name for stage in stages]


# Shards the driver checks or reads at once: on an object store each is a few small requests, so it waits on the
# network, not the CPU (a resume of thousands of shards would otherwise make them one after another).
SHARD_IO_THREADS = 16
T = TypeVar("T")


def _per_shard(function: Callable[[ShardSpec], T], specs: list[ShardSpec]) -> list[T]:
    """``function`` of every shard on a thread pool, results in shard order."""
    with ThreadPoolExecutor(min(SHARD_IO_THREADS, max(1, len(specs)))) as pool:
        return list(pool.map(function, specs))


def _progress(total: int):
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    # in a terminal: a live bar; in a log file (cluster jobs): a line every 15 s
    return tqdm(total=total, unit="shard", desc="build", file=sys.stderr, dynamic_ncols=tty,
                mininterval=0.5 if tty else 15.0, ascii=not tty)


def build(config: BuildConfig, out: str | Path, *, runner: str | None = None, limit: int | None = None,
          resume: bool = False, overwrite: bool = False) -> BuildSummary:
    """Run a whole build into ``out`` (a folder or an fsspec URL); returns what happened (failed shards are
    listed, not raised). Workers write their shards there directly; only this process writes the manifest."""
    start = time.perf_counter()
    store = Store(out, config.storage.options)
    kind = runner or config.runner.kind
    prepare_out_dir(store, config, resume, overwrite)
    stage_order = preflight(config)
    specs = plan_shards(config, limit)
    if not specs:
        raise AlignDataError("the plan is empty: the sources have no documents (or --limit is 0)")
    if all(s.problem for s in specs):
        raise AlignDataError("no source can be read:\n" + "\n".join(f"  {s.problem}" for s in specs))
    specs = with_cross_shard_drops(config, specs, kind)
    config_hash = config.hash()
    store.check_writable()
    if not store.exists("config.json"):
        with store.writer("config.json") as handle:  # storage options may hold secrets: never written
            handle.write(json.dumps({"config_hash": config_hash,
                                     "config": config.model_dump(mode="json", exclude={"storage"})},
                                    indent=1, sort_keys=True).encode())
    plan = [s.to_json() for s in specs]
    with store.writer("plan.json") as handle:
        handle.write(json.dumps({"limit": limit, "shards": plan}, indent=1).encode())

    todo = specs
    if resume:
        problems = _per_shard(lambda s: verify_shard(store, s.shard_id, config_hash, hashes=store.local is not None,
                                                     plan_key=s.key()), specs)
        todo = [spec for spec, found in zip(specs, problems, strict=True) if found]
    summary = BuildSummary(out_dir=out, planned=len(specs), skipped=len(specs) - len(todo), written=0)
    # shards go through the stages in batches of llm.batch_shards; a batch with a shard to do is redone whole
    batches = shard_batches(specs, config.llm.batch_shards, {s.shard_id for s in todo})
    bar = _progress(len(todo))
    for spec in todo:
        if spec.problem:
            bar.write(f"warning: {spec.problem} (recorded as an error record in shard {spec.shard_id})")
    rows = 0
    t_run = time.perf_counter()
    outcomes = run_local(config, str(out), batches) if kind == "local" else run_ray(config, str(out), batches)
    stopped: ServiceUnavailable | None = None
    try:
        for spec, sidecar, error in outcomes:
            if sidecar is not None:
                summary.written += 1
                rows += sidecar.rows
            else:
                summary.failed[spec.shard_id] = error or "unknown failure"
                bar.write(f"shard {spec.shard_id} failed: {(error or '').splitlines()[0]}")
            elapsed = max(time.perf_counter() - t_run, 1e-9)
            bar.set_postfix(rows=rows, rows_per_s=f"{rows / elapsed:.2f}", failed=len(summary.failed), refresh=False)
            bar.update(1)
            crash_point("driver:shard_done")
    except ServiceUnavailable as exc:  # the finished shards stay; --resume continues once it is back
        stopped = exc
    finally:
        bar.close()
    sidecars = [sc for sc in _per_shard(lambda s: load_sidecar(store, s.shard_id), specs) if sc is not None]
    try:
        summary.manifest = write_manifest(store, config_hash, plan, sidecars, summary.failed, stage_order)
    except OSError as exc:
        raise AlignDataError(f"could not write {store.url('manifest.json')}: {exc}; free space (or fix "
                             "permissions) and rerun with --resume") from exc
    if stopped is not None:
        raise AlignDataError(f"build stopped: {stopped}; {len(sidecars)} of {len(specs)} shards are complete, "
                             "rerun with --resume when it is reachable") from stopped
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary
