"""What every export format shares: the per-shard tally, the format contract, and the speech-clip view of a row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from align_data.errors import AlignDataError
from align_data.schemas import Record

if TYPE_CHECKING:
    from align_data.export.source import SourceCorpus

EXPORT_VERSION = 1


@dataclass(slots=True)
class Tally:
    """Counts for one shard (or, summed, for the whole export): every selected row is exported or skipped."""

    rows_read: int = 0
    rows_selected: int = 0
    rows_exported: int = 0
    items: int = 0  # what the format writes per row: cuts, manifest lines, dataset rows
    audio_seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)  # reason -> rows
    skipped_ids: list = field(default_factory=list)  # [id, task, reason]
    splits: Counter = field(default_factory=Counter)  # exported rows per split
    split_seconds: Counter = field(default_factory=Counter)  # exported audio seconds per split
    tasks: Counter = field(default_factory=Counter)  # exported rows per task
    voices: Counter = field(default_factory=Counter)  # exported rows per backend:voice
    languages: Counter = field(default_factory=Counter)  # exported rows per voice language

    def exported(self, record: Record, items: int) -> None:
        """Count ``record`` as written, as ``items`` format items carrying all of its clips."""
        self.rows_exported += 1
        self.items += items
        seconds = sum(clip.duration_s for clip in record.audio)
        self.audio_seconds += seconds
        self.split_seconds[record.split] += seconds
        self.splits[record.split] += 1
        self.tasks[record.task] += 1
        if record.voice is not None:
            self.voices[f"{record.voice.backend}:{record.voice.voice_id}"] += 1
            self.languages[record.voice.language] += 1

    def skip(self, record: Record, reason: str) -> None:
        """Count ``record`` as not representable in the format, with the reason (it is listed in skipped.jsonl)."""
        self.skipped[reason] += 1
        self.skipped_ids.append([record.id, record.task, reason])

    def merge(self, other: Tally) -> None:
        self.rows_read += other.rows_read
        self.rows_selected += other.rows_selected
        self.rows_exported += other.rows_exported
        self.items += other.items
        self.audio_seconds += other.audio_seconds
        self.skipped_ids.extend(other.skipped_ids)
        for name in ("skipped", "splits", "split_seconds", "tasks", "voices", "languages"):
            getattr(self, name).update(getattr(other, name))

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read, "rows_selected": self.rows_selected,
            "rows_exported": self.rows_exported, "items": self.items,
            "audio_seconds": round(self.audio_seconds, 3),
            "skipped": dict(sorted(self.skipped.items())), "skipped_ids": self.skipped_ids,
            "splits": dict(sorted(self.splits.items())),
            "split_seconds": {k: round(v, 3) for k, v in sorted(self.split_seconds.items())},
            "tasks": dict(sorted(self.tasks.items())),
            "voices": dict(sorted(self.voices.items())), "languages": dict(sorted(self.languages.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            rows_read=data["rows_read"], rows_selected=data["rows_selected"],
            rows_exported=data["rows_exported"], items=data["items"], audio_seconds=data["audio_seconds"],
            skipped=Counter(data["skipped"]), skipped_ids=[list(x) for x in data["skipped_ids"]],
            splits=Counter(data["splits"]), split_seconds=Counter(data["split_seconds"]), tasks=Counter(data["tasks"]),
            voices=Counter(data["voices"]), languages=Counter(data["languages"]),
        )


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """Settings that change the output bytes; a resumed export must have the same ones."""

    format: str
    tasks: tuple[str, ...]
    absolute_paths: bool = False
    audio_locator_tag: str | None = None  # formats that mark where audio goes in text (nemo); None for the others


class ShardWriter(Protocol):
    """Writes one source shard's selected rows; ``close`` returns the paths written, relative to OUT."""

    def add(self, record: Record, tally: Tally) -> None: ...

    def close(self) -> list[str]: ...

    def abort(self) -> None: ...

    def info(self) -> dict:
        """JSON-able facts the format's finalize step needs from this shard (kept in the completion marker)."""
        ...


@dataclass(frozen=True, slots=True)
class ExportFormat:
    """One target format: a per-shard writer and a finalize step that writes the files spanning all shards.

    ``finalize`` gets one dict per shard: ``shard_id``, ``tally`` (counts), ``info`` (from the writer) and
    ``files`` (what the shard wrote, audio clips left out)."""

    name: str
    summary: str
    open_shard: Callable[[Path, int, ExportOptions, SourceCorpus], ShardWriter]
    finalize: Callable[[Path, SourceCorpus, ExportOptions, list[dict]], list[str]]
    writes_audio_tree: bool = False  # FLAC files under audio/ that manifests point to by path
    audio_locator_tag: str | None = None  # the default of --audio-locator-tag, for formats that take one


@dataclass(frozen=True, slots=True)
class SpeechClip:
    """One clip of a row with the transcript of the speech segment(s) that point at it."""

    index: int
    flac: bytes
    sample_rate: int
    num_samples: int
    transcript: str

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


def speech_clips(record: Record) -> list[SpeechClip]:
    """The row's clips in audio order, each with its transcript; refuses rows whose segments and audio disagree."""
    texts: dict[int, list[str]] = {}
    for seg in record.segments:
        if seg.modality != "speech":
            continue
        if seg.audio_index is None or not 0 <= seg.audio_index < len(record.audio):
            raise AlignDataError(f"{record.id}: a speech segment points at audio {seg.audio_index}, the row has "
                                 f"{len(record.audio)} clip(s); rebuild the shard (`align-data validate`)")
        texts.setdefault(seg.audio_index, []).append(seg.text)
    return [SpeechClip(i, clip.flac, clip.sample_rate, clip.num_samples, " ".join(texts.get(i, [])))
            for i, clip in enumerate(record.audio)]


def is_single_clip(record: Record) -> bool:
    """True when the whole input is one spoken clip (no text spans): what single-audio formats can carry."""
    return len(record.audio) == 1 and all(seg.modality == "speech" for seg in record.segments)


def clip_id(record: Record, index: int) -> str:
    """The id of clip ``index`` of a row, as used for file names, cut ids and recording ids."""
    return f"{record.id}_{index}"
