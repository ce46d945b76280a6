"""``plan``: the shard plan without running it, and an estimate of a build's work and wall time from stage rates
measured by a finished build (its manifest) or a short pilot build of the first shards."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from align_data.config import BuildConfig
from align_data.errors import AlignDataError
from align_data.pipeline.plan import ShardSpec
from align_data.storage import as_store, input_size

STARTUP_S = 10.0  # outside the stages' own seconds: Ray start-up, each worker loading its models, the manifest
LLM_STAGES = ("targets", "target_checks")  # the stages the split layout runs in the LLM pool (stages.STAGE_GROUPS)


@dataclass(slots=True)
class SourcePlan:
    """One source as planned: how its files are read, how many, their bytes, shards and documents."""

    name: str
    reader: str
    files: int
    bytes: int | None
    shards: int
    docs: int  # exact, or estimated where ``estimated``
    estimated: bool
    problem: str | None = None


@dataclass(slots=True)
class PlanSummary:
    sources: list[SourcePlan]
    shards: int
    docs: int
    estimated: bool  # some documents are estimated (byte ranges counted only when read)
    seconds: float  # time to plan


def summarize_plan(config: BuildConfig, specs: list[ShardSpec], seconds: float) -> PlanSummary:
    sources = []
    for index, source in enumerate(config.sources):
        own = [s for s in specs if s.source_index == index]
        if not own:
            continue
        paths = sorted({p.path for s in own for p in s.pieces})
        reader = next((s.reader for s in own if s.reader), "-")
        sizes = None if reader == "stream" else sum(input_size(p, config.storage.options) for p in paths)
        # a byte range is cut to hold about docs_per_shard documents (their mean size in the first MiB)
        docs = sum(s.docs if s.docs is not None else config.shards.docs_per_shard for s in own)
        sources.append(SourcePlan(source.name, reader, len(paths), sizes, len(own), docs,
                                  any(s.docs is None for s in own), own[0].problem))
    return PlanSummary(sources, len(specs), sum(s.docs for s in sources), any(s.estimated for s in sources),
                       round(seconds, 3))


@dataclass(slots=True)
class Rates:
    """Per source document, as a build measured them (worker-seconds per stage, work per kind)."""

    origin: str
    docs: int
    segments: float
    rows: float
    audio_s: float
    tasks: dict[str, float]
    usage: dict[str, float]  # the targets stage's calls, tokens_in, tokens_out, ...
    stage_s: dict[str, float]
    workers: int  # the measuring build's workers (its runner)


def rates_from_manifest(manifest: dict, origin: str, workers: int = 1) -> Rates:
    docs = manifest.get("input_docs") or 0
    if docs <= 0:
        raise AlignDataError(f"{origin}: the build read no documents, so it measured no rates")
    usage = manifest.get("stages", {}).get("targets", {}).get("usage", {})
    return Rates(origin, docs, manifest["candidates"] / docs, manifest["rows"] / docs,
                 manifest["audio_seconds"] / docs, {k: v / docs for k, v in manifest.get("tasks", {}).items()},
                 {k: v / docs for k, v in usage.items()},
                 {k: v / docs for k, v in manifest.get("stage_seconds", {}).items()}, workers)


def rates_from_build(build_dir: str) -> Rates:
    store = as_store(build_dir)
    try:
        manifest = json.loads(store.read_text("manifest.json"))
    except FileNotFoundError:
        raise AlignDataError(f"--rates {build_dir}: no manifest.json there (not a finished build)") from None
    return rates_from_manifest(manifest, str(build_dir))


def pilot_rates(config: BuildConfig, shards: int) -> Rates:
    """Rates from a build of the first ``shards`` shards' documents, in this process (one worker), in a temporary
    folder that is removed after."""
    from align_data.pipeline.build import build

    limit = max(1, shards) * config.shards.docs_per_shard
    with tempfile.TemporaryDirectory(prefix="align-data-pilot-") as out:
        summary = build(config, Path(out) / "build", runner="local", limit=limit)
        return rates_from_manifest(summary.manifest, f"a pilot build of {summary.manifest['input_docs']} documents")


@dataclass(slots=True)
class Estimate:
    docs: int
    segments: int
    rows: int
    rows_per_task: dict[str, int]
    audio_hours: float
    llm_calls: int
    tokens_in: int
    tokens_out: int
    stage_worker_s: dict[str, float]
    cpu_workers: int
    gpu_workers: int
    wall_s: float
    bottleneck: str
    pools: dict[str, float] = field(default_factory=dict)  # wall seconds of each pool


def estimate(config: BuildConfig, plan: PlanSummary, rates: Rates, cpus: float | None = None,
             gpus: float | None = None, startup_s: float = STARTUP_S) -> Estimate:
    """Scale the rates to the plan's documents; spread the worker-seconds over the cluster's workers.

    CPU workers: ``cpus / runner.cpus_per_worker`` (default: the config's runner). With ``gpus`` and the split
    layout, the LLM stages run on ``gpus / runner.llm.num_gpus`` actors at the measured rate (measure on the same
    kind of hardware: ``--rates`` from a GPU build for a GPU cluster), the other stages on the CPU workers; the two
    pools stream, so the slower one sets the time. Otherwise every stage shares the CPU workers. The last round of
    shards can leave workers idle: the time is at least ceil(shards / workers) shards' worth."""
    runner = config.runner
    n = plan.docs
    stage_s = {k: v * n for k, v in rates.stage_s.items()}
    per_cpu = runner.cpus_per_worker if runner.layout == "fused" else runner.speech.num_cpus or 1.0
    cpu_workers = max(1, int((cpus if cpus is not None else runner.num_workers * runner.cpus_per_worker)
                             // per_cpu))
    gpu_workers = 0
    if gpus and runner.layout == "split" and runner.llm.num_gpus > 0:
        gpu_workers = max(1, int(gpus // runner.llm.num_gpus))

    def pool_wall(seconds: float, workers: int) -> float:
        if seconds <= 0:
            return 0.0
        rounds = math.ceil(plan.shards / workers) if plan.shards else 1
        return max(seconds / workers, rounds * seconds / max(1, plan.shards))

    if gpu_workers:
        llm = {k: v for k, v in stage_s.items() if k in LLM_STAGES}
        speech = {k: v for k, v in stage_s.items() if k not in LLM_STAGES}
        pools = {"speech (CPU)": pool_wall(sum(speech.values()), cpu_workers),
                 "llm (GPU)": pool_wall(sum(llm.values()), gpu_workers)}
        slow = max(pools, key=pools.get)
        group = llm if slow.startswith("llm") else speech
    else:
        pools = {"all stages (CPU)": pool_wall(sum(stage_s.values()), cpu_workers)}
        slow, group = next(iter(pools)), stage_s
    top = max(group, key=group.get) if group else "-"
    share = group[top] / max(1e-9, sum(stage_s.values())) if group else 0.0
    return Estimate(
        docs=n, segments=round(rates.segments * n), rows=round(rates.rows * n),
        rows_per_task={k: round(v * n) for k, v in sorted(rates.tasks.items())},
        audio_hours=rates.audio_s * n / 3600, llm_calls=round(rates.usage.get("calls", 0) * n),
        tokens_in=round(rates.usage.get("tokens_in", 0) * n), tokens_out=round(rates.usage.get("tokens_out", 0) * n),
        stage_worker_s={k: round(v, 1) for k, v in stage_s.items()}, cpu_workers=cpu_workers,
        gpu_workers=gpu_workers, wall_s=round(max(pools.values()) + startup_s, 1),
        bottleneck=f"{top} ({share:.0%} of all worker-seconds, in the {slow} pool)", pools=pools)
