"""Deterministic shard plan: which documents of which source each shard reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from align_data.config import BuildConfig
from align_data.errors import AlignDataError
from align_data.pipeline.reader import count_documents


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One unit of work: documents [start, stop) of source ``source_index``."""

    shard_id: int
    source_index: int
    start: int
    stop: int
    seed: int
    problem: str | None = None  # the source could not be read: the shard is one error record saying why

    @property
    def num_docs(self) -> int:
        return self.stop - self.start

    def to_json(self) -> dict:
        return asdict(self)


def _count(source, options) -> tuple[int, str | None]:
    """Documents in a source, or 0 and why it cannot be read (a missing file, no text column, ...)."""
    try:
        return count_documents(source, options), None
    except AlignDataError as exc:
        return 0, str(exc)


def plan_shards(config: BuildConfig, limit: int | None = None,
                counts: list[int] | None = None) -> list[ShardSpec]:
    """Cut every source into shards of ``docs_per_shard`` documents; ``limit`` caps documents in total.

    A source that cannot be read, or has no documents, still gets one (empty) shard, so it is accounted
    for: an error record (``source_unreadable``) or a filtered one (``empty_source``)."""
    if counts is not None:
        counted = [(n, None) for n in counts]
    else:
        counted = [_count(s, config.storage.options) for s in config.sources]
    size = config.shards.docs_per_shard
    specs: list[ShardSpec] = []
    remaining = limit
    for index, (total, problem) in enumerate(counted):
        if remaining is not None and remaining <= 0:
            break
        if total == 0:
            specs.append(ShardSpec(len(specs), index, 0, 0, config.seed, problem))
            continue
        take = total if remaining is None else min(total, remaining)
        for start in range(0, take, size):
            specs.append(ShardSpec(len(specs), index, start, min(start + size, take), config.seed))
        if remaining is not None:
            remaining -= take
    return specs
