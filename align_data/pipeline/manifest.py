"""Verify shard sidecars against their files and merge them into ``manifest.json``."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from align_data import __version__
from align_data.faults import crash_point
from align_data.pipeline.writers import shard_name
from align_data.schemas import SCHEMA_VERSION
from align_data.schemas.sidecar import ShardSidecar, StageCounts
from align_data.storage import Store, as_store


def sidecar_name(shard_id: int) -> str:
    return f"shards/{shard_name(shard_id)}.json"


def load_sidecar(store: Store | str | Path, shard_id: int) -> ShardSidecar | None:
    try:
        text = as_store(store).read_text(sidecar_name(shard_id))
    except FileNotFoundError:
        return None
    return ShardSidecar.from_json(json.loads(text))


def verify_shard(store: Store | str | Path, shard_id: int, config_hash: str, hashes: bool = True,
                 plan_key: str | None = None) -> list[str]:
    """Reasons the shard is not complete and intact (empty list: it verifies).

    ``hashes=False`` checks each file's size but not its sha256: for resuming on an object store, where a file
    appears only whole and reading every shard back would download the corpus; ``validate`` always hashes."""
    store = as_store(store)
    try:
        sidecar = load_sidecar(store, shard_id)
    except (ValueError, TypeError, KeyError) as exc:
        return [f"shard {shard_id}: unreadable sidecar ({exc})"]
    if sidecar is None:
        return [f"shard {shard_id}: missing (no sidecar)"]
    problems = []
    if sidecar.config_hash != config_hash:
        problems.append(f"shard {shard_id}: written with config {sidecar.config_hash}, expected {config_hash}")
    if plan_key is not None and sidecar.plan_key not in (None, plan_key):
        problems.append(f"shard {shard_id}: written for another plan of the sources (another --limit, or files "
                        "that changed)")
    for rel, meta in sidecar.files.items():
        try:
            size = store.size(rel)  # one request on a store, where it also says whether the file exists
        except FileNotFoundError:
            problems.append(f"shard {shard_id}: {rel} is missing")
            continue
        if size != meta["bytes"] or (hashes and store.sha256(rel) != meta["sha256"]):
            problems.append(f"shard {shard_id}: {rel} does not match its sha256 in the sidecar")
    return problems


def write_manifest(store: Store | str | Path, config_hash: str, planned: list[dict],
                   sidecars: list[ShardSidecar], failed: dict[int, str], stage_order: list[str] | None = None) -> dict:
    """Sum the sidecars, record the plan and any failed shards, write ``manifest.json`` atomically."""
    store = as_store(store)
    stages: dict[str, StageCounts] = {}
    tasks, voices, splits, genders = Counter(), Counter(), Counter(), Counter()
    seconds: dict[str, float] = {}
    for sc in sidecars:
        for name, counts in sc.stages.items():
            stages.setdefault(name, StageCounts()).merge(counts)
        tasks.update(sc.tasks)
        voices.update(sc.voices)
        splits.update(sc.splits)
        genders.update(sc.genders)
        for k, v in sc.seconds.items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 3)
    manifest = {
        "package_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "config_hash": config_hash,
        "created_unix": int(time.time()),
        "planned_shards": len(planned),
        "planned_docs": _planned_docs(planned),
        "complete_shards": len(sidecars),
        "failed_shards": {str(k): v for k, v in sorted(failed.items())},
        "input_docs": sum(sc.input_docs for sc in sidecars),
        "candidates": sum(sc.candidates for sc in sidecars),
        "rows": sum(sc.rows for sc in sidecars),
        "errors": sum(sc.errors for sc in sidecars),
        "filtered": sum(sc.filtered for sc in sidecars),
        "audio_seconds": round(sum(sc.audio_seconds for sc in sidecars), 3),
        "tasks": dict(sorted(tasks.items())),
        "voices": dict(sorted(voices.items())),
        "splits": dict(sorted(splits.items())),
        "genders": dict(sorted(genders.items())),
        "stages": {k: _counts(v) for k, v in stages.items()},
        "stage_order": ([n for n in stage_order or [] if n in stages]
                        + [n for n in stages if n not in (stage_order or [])]),
        "stage_seconds": seconds,
        "shards": [{"shard_id": sc.shard_id, "rows": sc.rows, "errors": sc.errors, "filtered": sc.filtered,
                    "input_docs": sc.input_docs, "audio_seconds": sc.audio_seconds,
                    "sidecar_sha256": store.sha256(sidecar_name(sc.shard_id))}
                   for sc in sorted(sidecars, key=lambda s: s.shard_id)],
    }
    with store.writer("manifest.json") as handle:
        handle.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
        crash_point("manifest")
    return manifest


def _planned_docs(planned: list[dict]) -> int | None:
    """Documents the plan names; None when some shards are byte ranges whose documents are counted as read."""
    from align_data.pipeline.plan import planned_docs

    counts = [planned_docs(p) for p in planned]
    return None if None in counts else sum(counts)


def _counts(c: StageCounts) -> dict:
    return {"total": c.total, "passed": c.passed, "filtered": dict(sorted(c.filtered.items())),
            "errors": dict(sorted(c.errors.items())), "usage": dict(sorted(c.usage.items()))}
