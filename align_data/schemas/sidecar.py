"""Shard sidecar (the completion marker), error lines and the manifest, as plain JSON-able classes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class StageCounts:
    """Per stage, per shard: records seen, passed on, filtered by reason, errors by kind, and the work a stage
    reports (``usage``: the targets stage's LLM calls, tokens in/out, cache hits, retries)."""

    total: int = 0
    passed: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)  # absent from sidecars written before it existed

    def merge(self, other: "StageCounts") -> None:
        self.total += other.total
        self.passed += other.passed
        for k, v in other.filtered.items():
            self.filtered[k] = self.filtered.get(k, 0) + v
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v
        for k, v in other.usage.items():
            self.usage[k] = self.usage.get(k, 0) + v


@dataclass(slots=True)
class ShardSidecar:
    """Everything known about a finished shard; written last, so its presence marks completion."""

    shard_id: int
    schema_version: str
    config_hash: str
    input_docs: int
    candidates: int
    rows: int
    errors: int
    filtered: int
    audio_seconds: float
    tasks: dict[str, int]
    voices: dict[str, int]
    splits: dict[str, int]
    genders: dict[str, int]
    stages: dict[str, StageCounts]
    files: dict[str, dict[str, Any]]  # relative path -> {"sha256", "bytes"}
    seconds: dict[str, float]  # wall time per stage
    plan_key: str | None = None  # ShardSpec.key() of what the shard read (absent from sidecars written before it)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShardSidecar":
        data = dict(data)
        data["stages"] = {k: StageCounts(**v) for k, v in data["stages"].items()}
        return cls(**data)


def error_line(record_id: str, shard_id: int, stage: str, kind: str, message: str,
               source: dict[str, Any], text: str, task: str | None = None) -> dict[str, Any]:
    """One line of ``errors/NNNNN.jsonl`` or ``filtered/NNNNN.jsonl`` (kind = the filter reason), with the
    record's task once one was assigned."""
    return {"id": record_id, "shard_id": shard_id, "stage": stage, "kind": kind,
            "message": message, "source": source, "text": text[:500], "task": task}
