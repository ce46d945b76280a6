"""Deterministic shard plan: which documents of which source each shard reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from align_data.config import BuildConfig
from align_data.pipeline.reader import count_documents


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One unit of work: documents [start, stop) of source ``source_index``."""

    shard_id: int
    source_index: int
    start: int
    stop: int
    seed: int

    @property
    def num_docs(self) -> int:
        return self.stop - self.start

    def to_json(self) -> dict:
        return asdict(self)


def plan_shards(config: BuildConfig, limit: int | None = None,
                counts: list[int] | None = None) -> list[ShardSpec]:
    """Cut every source into shards of ``docs_per_shard`` documents; ``limit`` caps documents in total."""
    counts = counts if counts is not None else [count_documents(s) for s in config.sources]
    size = config.shards.docs_per_shard
    specs: list[ShardSpec] = []
    remaining = limit if limit is not None else sum(counts)
    for index, total in enumerate(counts):
        take = min(total, remaining)
        for start in range(0, take, size):
            specs.append(ShardSpec(len(specs), index, start, min(start + size, take), config.seed))
        remaining -= take
        if remaining <= 0:
            break
    return specs
