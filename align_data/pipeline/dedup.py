"""Dedup across shards: a first pass hashes every shard's segments, then each shard drops the ones an earlier shard
holds (``cross_shard_duplicate``), so the kept copy is the first in plan order whatever runs first.

Cost: the pass reads and segments every planned document once more (no TTS, no LLM: milliseconds a document, next to
seconds for speech and targets), in this process for a small plan and in Ray tasks for a large one; the driver holds
12 bytes per kept segment plus a sort (about 40 bytes a segment at the peak: 50 M segments ≈ 2 GB). Only the keys
of actual duplicates enter the plan (``ShardSpec.drop``), which travels with each shard to its worker."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from align_data.config import BuildConfig
from align_data.errors import AlignDataError
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import read_documents
from align_data.stages.source import SourceStage

KEY_BYTES = 12  # dedup_key is a 96-bit blake2b, as hex
IN_PROCESS_SHARDS = 64  # plans up to this many shards are hashed here: a Ray task would cost more than the work
TASK_SHARDS = 32  # shards hashed per Ray task


def shard_keys(spec: ShardSpec, config: BuildConfig, source: SourceStage | None = None) -> np.ndarray:
    """The dedup keys a shard holds, in order, as an (n, 12) uint8 array (reading its documents again)."""
    source = source or SourceStage(config.segment, config.seed, config.splits.heldout_fraction)
    try:
        docs = read_documents(spec, config)
    except (OSError, AlignDataError):  # the shard's own run fails the same way and is reported; no keys until then
        return np.zeros((0, KEY_BYTES), dtype=np.uint8)
    keys = source.dedup_keys(docs, spec.shard_id)
    return np.frombuffer(bytes.fromhex("".join(keys)), dtype=np.uint8).reshape(-1, KEY_BYTES)


def cross_shard_drops(per_shard: list[np.ndarray]) -> list[tuple[str, ...]]:
    """For each shard, the keys (hex) that an earlier shard holds: all but the first occurrence of each key."""
    sizes = [len(k) for k in per_shard]
    drops: list[list[str]] = [[] for _ in per_shard]
    if sum(sizes) == 0:
        return [()] * len(per_shard)
    keys = np.concatenate([k.reshape(-1, KEY_BYTES) for k in per_shard])
    owner = np.repeat(np.arange(len(per_shard), dtype=np.int32), sizes)
    _, first = np.unique(keys, axis=0, return_index=True)  # first occurrence = earliest shard (in plan order)
    later = np.ones(len(keys), dtype=bool)
    later[first] = False
    for i in np.flatnonzero(later):
        drops[owner[i]].append(keys[i].tobytes().hex())
    return [tuple(d) for d in drops]


def _keys_of_batch(config_json: dict, specs_json: list[dict]) -> list[bytes]:
    """A Ray task's work: the keys of a batch of shards, as raw bytes."""
    config = BuildConfig.model_validate(config_json)
    source = SourceStage(config.segment, config.seed, config.splits.heldout_fraction)
    return [shard_keys(ShardSpec(**s), config, source).tobytes() for s in specs_json]


def _all_keys(config: BuildConfig, specs: list[ShardSpec], kind: str) -> list[np.ndarray]:
    from tqdm import tqdm

    bar = tqdm(total=len(specs), unit="shard", desc="dedup pass", file=sys.stderr, disable=len(specs) < 2,
               mininterval=0.5 if sys.stderr.isatty() else 15.0)
    try:
        if kind == "local" or len(specs) <= IN_PROCESS_SHARDS:
            source = SourceStage(config.segment, config.seed, config.splits.heldout_fraction)
            found = []
            for spec in specs:
                found.append(shard_keys(spec, config, source))
                bar.update(1)
            return found
        import ray

        from align_data.pipeline.runners import _ray_init

        _ray_init(config)
        task = ray.remote(num_cpus=1, max_retries=3)(_keys_of_batch)
        config_ref = ray.put(config.model_dump(mode="json"))
        batches = [specs[i:i + TASK_SHARDS] for i in range(0, len(specs), TASK_SHARDS)]
        refs = {task.remote(config_ref, [s.to_json() for s in b]): n for n, b in enumerate(batches)}
        results: dict[int, list[bytes]] = {}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[refs[ref]] = ray.get(ref)
                bar.update(len(batches[refs[ref]]))
        return [np.frombuffer(raw, dtype=np.uint8).reshape(-1, KEY_BYTES)
                for n in range(len(batches)) for raw in results[n]]
    finally:
        bar.close()


def with_cross_shard_drops(config: BuildConfig, specs: list[ShardSpec], kind: str) -> list[ShardSpec]:
    """The plan with each shard's ``drop`` set (unchanged when dedup is off or there is one shard)."""
    readable = [s for s in specs if s.pieces]
    if not config.segment.dedup or len(readable) < 2:
        return specs
    drops = dict(zip((s.shard_id for s in readable), cross_shard_drops(_all_keys(config, readable, kind)),
                     strict=True))
    return [dataclasses.replace(s, drop=drops[s.shard_id]) if drops.get(s.shard_id) else s for s in specs]
