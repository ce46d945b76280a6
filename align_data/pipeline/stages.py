"""The stage chain for a build config, its plan check, and running it over one shard with counts."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar
from dataclasses import dataclass, field
from pathlib import Path

from align_data.config import BuildConfig
from align_data.errors import AlignDataError, ServiceUnavailable
from align_data.pipeline.plan import ShardSpec
from align_data.faults import crash_point
from align_data.pipeline.reader import read_pieces
from align_data.schemas import ErrorInfo, Provenance, Record, SourceRef
from align_data.schemas.sidecar import StageCounts
from align_data.stages.acoustics import AcousticsStage
from align_data.stages.base import Stage
from align_data.stages.interleave import InterleaveStage
from align_data.stages.paralinguistics import ParalinguisticsStage
from align_data.stages.quality import asr_gate, target_checks
from align_data.stages.source import SourceStage
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.stage import RepairPolicy
from align_data.stages.targets.client import default_cache_path
from align_data.stages.tts import TTSStage
from align_data.storage import local_work_dir


def build_stages(config: BuildConfig, out_dir: str | Path | None = None) -> list[Stage]:
    """The stages after ``source``, in order; ``out_dir`` places the default LLM response cache (on this
    machine when it is a URL)."""
    cache_dir = None if out_dir is None else local_work_dir(out_dir)
    tts = TTSStage(config.tts, config.seed)
    acoustics = AcousticsStage(config.acoustics, config.seed)
    paralinguistics = ParalinguisticsStage(config.paralinguistics)

    def revoice(record: Record, attempt: int, tried: frozenset[tuple[str, str]]) -> Record:
        """The record spoken again by another voice and measured anew (the ASR gate's repair)."""
        return paralinguistics.process(acoustics.process(tts.speak(record, attempt, tried)))

    return [
        InterleaveStage(config.interleave, config.seed),
        tts,
        acoustics,
        paralinguistics,
        *asr_gate(config.quality, revoice),  # optional (quality.enabled): Whisper round trip, WER filter + re-voicing
        TargetsStage(config.llm, config.seed, cache_path=default_cache_path(config.llm, cache_dir),
                     repair=RepairPolicy.from_config(config.quality)),
        *target_checks(config.quality),  # optional (quality.target_filters)
    ]


def check_chain(stages: list[Stage]) -> None:
    """Every field a stage reads is written by an earlier stage; every package it needs imports."""
    produced = set(SourceStage.writes)
    for stage in stages:
        missing = [f for f in stage.reads if f not in produced]
        if missing:
            raise AlignDataError(f"stage {stage.name} reads {', '.join(missing)} but no earlier stage "
                                 "writes it: reorder the stages")
        for module in stage.requires:
            if importlib.util.find_spec(module) is None:
                raise AlignDataError(f"stage {stage.name} needs the Python package {module!r}: "
                                     "pip install it (see the README's set-up)")
        produced.update(stage.writes)


@dataclass(slots=True)
class ShardResult:
    """A processed shard before writing: all its records, per-stage counts and seconds."""

    spec: ShardSpec
    records: list[Record]
    stages: dict[str, StageCounts] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    filtered_by: dict[str, str] = field(default_factory=dict)  # record id -> stage that filtered it
    docs_read: int = 0  # source documents the shard read (its sidecar's input_docs)


def _count(before: list[Record], after: list[Record], stage: str, filtered_by: dict[str, str]) -> StageCounts:
    counts = StageCounts(total=sum(r.live for r in before))
    for old, new in zip(before, after, strict=True):
        if not old.live:
            continue
        if new.live:
            counts.passed += 1
        elif new.error is not None:
            counts.errors[new.error.kind] = counts.errors.get(new.error.kind, 0) + 1
        else:
            counts.filtered[new.filtered] = counts.filtered.get(new.filtered, 0) + 1
            filtered_by[new.id] = stage
    return counts


def _source_record(spec: ShardSpec, config: BuildConfig) -> Record:
    """The one record of a shard whose source is unreadable (an error) or has no documents (filtered)."""
    name = config.sources[spec.source_index].name
    record = Record(id=f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}-source", shard_id=spec.shard_id,
                    source=SourceRef(name, "", 0), text="")
    if spec.problem:
        return dataclasses.replace(record, error=ErrorInfo("source", "source_unreadable", spec.problem))
    return dataclasses.replace(record, filtered="empty_source")


def read_documents(spec: ShardSpec, config: BuildConfig) -> list:
    """The documents of the shard's pieces of its source (none for an unreadable or empty source)."""
    if not spec.pieces:
        return []
    return read_pieces(config.sources[spec.source_index], spec.reader, spec.pieces, spec.by_offset,
                       config.storage.options)


def start_shard(spec: ShardSpec, config: BuildConfig, source: SourceStage) -> ShardResult:
    """Read the shard's documents and cut them into records (the ``source`` stage); segments whose dedup key an
    earlier shard holds (``spec.drop``) are filtered as ``cross_shard_duplicate``."""
    t0 = time.perf_counter()
    docs = read_documents(spec, config)
    if docs:
        records = source.records(docs, spec.shard_id, held=frozenset(spec.drop))
    else:  # a range with no document start in it has no records; an unreadable or empty source has one
        records = [] if spec.pieces else [_source_record(spec, config)]
    license = config.sources[spec.source_index].license
    if license is not None:
        records = [dataclasses.replace(r, provenance=Provenance(license=license)) for r in records]
    source_counts = StageCounts(total=len(records), passed=sum(r.live for r in records))
    for r in records:
        if r.error is not None:
            source_counts.errors[r.error.kind] = source_counts.errors.get(r.error.kind, 0) + 1
    result = ShardResult(spec, records, {"source": source_counts},
                         {"source": round(time.perf_counter() - t0, 4)}, docs_read=len(docs))
    for r in records:
        if r.filtered:
            source_counts.filtered[r.filtered] = source_counts.filtered.get(r.filtered, 0) + 1
            result.filtered_by[r.id] = "source"
    return result


def shard_error(exc: Exception) -> str:
    """A failed shard's error for the manifest: the exception and the innermost frames of its traceback (where it
    was raised; the outer ones are always the runner and apply_stages). Call it where the exception is caught."""
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-6)}"


T = TypeVar("T")


def or_error(function: Callable[..., T], *args: Any) -> T | str:
    """``function(*args)``, or the shard's error (``shard_error``) when it raises: one shard's failure is reported,
    the others go on. ServiceUnavailable propagates (every later shard would fail the same way)."""
    try:
        return function(*args)
    except ServiceUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 -- reported per shard
        return shard_error(exc)


def _record_stage(result: ShardResult, stage: Stage, after: list[Record], usage: dict[str, int],
                  seconds: float) -> None:
    if len(after) != len(result.records):
        raise RuntimeError(f"stage {stage.name} returned {len(after)} records for {len(result.records)}")
    result.stages[stage.name] = _count(result.records, after, stage.name, result.filtered_by)
    result.stages[stage.name].usage.update(usage)
    result.seconds[stage.name] = round(seconds, 4)
    result.records = after


def apply_stages(result: ShardResult, stages: list[Stage]) -> ShardResult:
    """Pass a shard's records through ``stages`` in order, counting what each stage did."""
    for stage in stages:
        t0 = time.perf_counter()
        after = stage(result.records)
        _record_stage(result, stage, after, stage.take_usage(), time.perf_counter() - t0)
        crash_point(f"stage:{stage.name}")
    return result


def _across(stage: Stage, results: list[ShardResult]) -> None:
    """One call of an across-shards stage over several shards' records, split back into each shard with its own
    counts and usage; the call's seconds are shared out by the LLM calls each shard made (else by its records)."""
    records = [r for result in results for r in result.records]
    t0 = time.perf_counter()
    after = stage(records)
    seconds = time.perf_counter() - t0
    if len(after) != len(records):
        raise RuntimeError(f"stage {stage.name} returned {len(after)} records for {len(records)}")
    by_shard = stage.take_usage_by_shard()
    weights = [by_shard.get(res.spec.shard_id, {}).get("calls", 0) for res in results]
    if not sum(weights):
        weights = [max(1, len(res.records)) for res in results]
    start = 0
    for result, weight in zip(results, weights, strict=True):
        end = start + len(result.records)
        _record_stage(result, stage, after[start:end], by_shard.get(result.spec.shard_id, {}),
                      seconds * weight / sum(weights))
        start = end


def apply_stages_together(results: list[ShardResult | str], stages: list[Stage]) -> list[ShardResult | str]:
    """Several shards through ``stages`` in order: a stage that batches across shards (``across_shards``: the
    LLM's, so its batches are larger) gets all their records in one call, every other stage one shard at a time.
    An entry that is a string is a shard that already failed (its error) and is left out; a stage that raises on
    one shard fails that shard only (an across-shards stage that raises fails all of them). ServiceUnavailable
    stops everything, as for one shard."""
    out = list(results)
    for stage in stages:
        live = [i for i, r in enumerate(out) if isinstance(r, ShardResult)]
        if stage.across_shards and len(live) > 1:
            error = or_error(_across, stage, [out[i] for i in live])
            if error is not None:
                for i in live:
                    out[i] = error
            crash_point(f"stage:{stage.name}")
            continue
        for i in live:
            out[i] = or_error(apply_stages, out[i], [stage])
    return out


def start_shards(specs: list[ShardSpec], config: BuildConfig, source: SourceStage) -> list[ShardResult | str]:
    """``start_shard`` of each shard, or its error."""
    return [or_error(start_shard, spec, config, source) for spec in specs]


def run_shards(specs: list[ShardSpec], config: BuildConfig, source: SourceStage,
               stages: list[Stage]) -> list[ShardResult | str]:
    """Read each shard's documents, then pass the shards through the stages together (``apply_stages_together``):
    each one's result, or its error."""
    return apply_stages_together(start_shards(specs, config, source), stages)


# Which Ray actor pool runs a stage in the "split" layout (stages not named here run in "speech").
STAGE_GROUPS = {"targets": "llm", "target_checks": "llm"}


def group_of(stage: Stage) -> str:
    return STAGE_GROUPS.get(stage.name, "speech")


def stage_groups(stages: list[Stage]) -> list[tuple[str, list[Stage]]]:
    """Consecutive stages of the same group, in pipeline order: [(group, stages), ...]."""
    groups: list[tuple[str, list[Stage]]] = []
    for stage in stages:
        if groups and groups[-1][0] == group_of(stage):
            groups[-1][1].append(stage)
        else:
            groups.append((group_of(stage), [stage]))
    return groups
