"""Deterministic shard plan: which documents of which source each shard reads, and where they are."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from align_data.config import BuildConfig
from align_data.errors import AlignDataError
from align_data.pipeline.reader import plan_source
from align_data.pipeline.sources import Piece, SourceSlice


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One unit of work: documents [start, stop) of source ``source_index``, read from ``pieces``.

    ``start``/``stop`` are document numbers, or (``by_offset``) byte offsets in the source: the shard holds the
    documents that start there. ``docs`` is the number planned, None where it is known only once read (a large
    txt/jsonl source cut by size). ``drop``: the dedup keys of segments an earlier shard holds (see dedup.py)."""

    shard_id: int
    source_index: int
    start: int
    stop: int
    seed: int
    problem: str | None = None  # the source could not be read: the shard is one error record saying why
    pieces: tuple[Piece, ...] = ()
    docs: int | None = -1  # -1: stop - start (a plan written before pieces existed)
    by_offset: bool = False
    reader: str = ""
    drop: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # a spec that travelled as JSON (plan.json, a Ray task) has its pieces as dicts and lists
        pieces = tuple(p if isinstance(p, Piece) else Piece(**p) for p in self.pieces)
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "drop", tuple(self.drop))
        if self.docs == -1:
            object.__setattr__(self, "docs", self.stop - self.start)

    @property
    def num_docs(self) -> int | None:
        """Documents planned (None: known once read)."""
        return self.docs

    def to_json(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """What the shard reads, as a hash: a shard written under another plan (another --limit, files that
        changed size) does not verify on resume."""
        data = {k: v for k, v in self.to_json().items() if k != "seed"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def planned_docs(spec: dict) -> int | None:
    """Documents a plan.json entry planned (None: known once read)."""
    docs = spec.get("docs", -1)
    return spec["stop"] - spec["start"] if docs == -1 else docs


def _slices(source, config: BuildConfig, limit: int | None) -> tuple[list[SourceSlice], str | None]:
    """A source's slices, or none and why it cannot be read (a missing file, no text column, ...)."""
    try:
        return plan_source(source, config.shards.docs_per_shard, limit, config.storage.options), None
    except AlignDataError as exc:
        return [], str(exc)


def plan_shards(config: BuildConfig, limit: int | None = None) -> list[ShardSpec]:
    """Cut every source into shards of ``docs_per_shard`` documents (a large txt/jsonl source: of their bytes);
    ``limit`` caps documents in total, and only what those documents need is read.

    A source that cannot be read, or has no documents, still gets one (empty) shard, so it is accounted
    for: an error record (``source_unreadable``) or a filtered one (``empty_source``)."""
    specs: list[ShardSpec] = []
    remaining = limit
    for index, source in enumerate(config.sources):
        if remaining is not None and remaining <= 0:
            break
        slices, problem = _slices(source, config, remaining)
        if not slices:
            specs.append(ShardSpec(len(specs), index, 0, 0, config.seed, problem))
            continue
        for s in slices:
            specs.append(ShardSpec(len(specs), index, s.start, s.stop, config.seed, pieces=s.pieces, docs=s.docs,
                                   by_offset=s.by_offset, reader=s.reader))
        if remaining is not None:
            remaining -= sum(s.docs if s.docs is not None else remaining for s in slices)
    return specs
