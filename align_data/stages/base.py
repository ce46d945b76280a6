"""The stage contract: declared fields and packages, ``setup()`` once per worker, ``__call__`` per batch."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, ClassVar, Sequence

import numpy as np

from align_data.errors import ServiceUnavailable
from align_data.schemas import ErrorInfo, Record


class RecordError(Exception):
    """A problem with one record (not the stage): the record becomes an error record of this ``kind``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def rng_for(seed: int, shard_id: int, record_id: str, stage: str) -> np.random.Generator:
    """A generator seeded by (global seed, shard, record id, stage): same inputs, same draws."""
    digest = hashlib.blake2b(f"{seed}|{shard_id}|{record_id}|{stage}".encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


class Stage:
    """Base class: subclasses set ``name``/``reads``/``writes``/``requires`` and implement ``process``."""

    name: ClassVar[str] = "stage"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[tuple[str, ...]] = ()  # importable module names checked before a run
    lazy_setup: ClassVar[bool] = False  # True: setup() runs on the first batch that needs it
    across_shards: ClassVar[bool] = False  # True: takes several shards' records in one call (take_usage_by_shard)

    def setup(self) -> None:
        """Load engines or models once per worker."""

    def take_usage(self) -> dict[str, int]:
        """Counters of the work done by the last ``__call__`` (LLM calls, tokens, cache hits), for the sidecar."""
        return {}

    def take_usage_by_shard(self) -> dict[int, dict[str, int]]:
        """``take_usage`` per shard id, for a stage that is ``across_shards``."""
        return {}

    def process(self, record: Record) -> Record:
        """Transform one live record; raise RecordError for a bad record."""
        raise NotImplementedError

    def __call__(self, batch: Sequence[Record]) -> list[Record]:
        """Apply ``process`` to live records; failed and filtered ones pass through unchanged."""
        return [self._guarded(r, self.process) if r.live else r for r in batch]

    def _guarded(self, record: Record, fn: Callable[[Record], Record]) -> Record:
        try:
            return fn(record)
        except RecordError as exc:
            return fail(record, self.name, exc.kind, str(exc))
        except ServiceUnavailable:
            raise
        except Exception as exc:  # an engine bug on one input must not sink the shard: record it
            return fail(record, self.name, f"unexpected_{type(exc).__name__}", _describe(exc))


def fail(record: Record, stage: str, kind: str, message: str) -> Record:
    """The record marked as failed in ``stage``; it keeps its id and goes to errors/."""
    return dataclasses.replace(record, error=ErrorInfo(stage=stage, kind=kind, message=message))


def _describe(exc: BaseException) -> str:
    """The exception and where it was raised, for an error record."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
    return f"{type(exc).__name__}: {exc}{where}"
