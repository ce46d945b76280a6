"""Stream a build's shards once, batch by batch and without audio bytes, into fixed-size statistics."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.report.samples import SampleChooser, voice_key
from align_data.schemas import Target
from align_data.schemas.arrow import META_SCHEMA_VERSION, check_schema_version
from align_data.stages.quality.checks import TARGET_CHECKS, check_target, row_facts, shown_texts, unfaithful
from align_data.stages.quality.normalize import normalize_words

# Every column the report reads; ``audio`` (the FLAC bytes) is never read.
COLUMNS = ("id", "task", "text", "description", "audio_meta", "voice", "paralinguistics", "targets", "split", "quality",
           "provenance")
BATCH_ROWS = 256


@dataclass(slots=True)
class Histogram:
    """Counts in fixed bins plus under/overflow, count, sum, min and max: constant memory for any corpus."""

    edges: np.ndarray
    counts: np.ndarray = field(init=False)
    below: int = 0
    above: int = 0
    n: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)

    @classmethod
    def linear(cls, start: float, stop: float, step: float) -> Histogram:
        return cls(np.arange(start, stop + step / 2, step))

    def add(self, values: Iterable[float]) -> None:
        arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
        if not arr.size:
            return
        self.counts += np.histogram(arr, bins=self.edges)[0]
        self.below += int((arr < self.edges[0]).sum())
        self.above += int((arr > self.edges[-1]).sum())
        self.n += int(arr.size)
        self.total += float(arr.sum())
        self.low, self.high = min(self.low, float(arr.min())), max(self.high, float(arr.max()))

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile to within one bin (values outside the edges count at the nearest edge)."""
        if not self.n:
            return None
        cumulative = np.concatenate([[self.below], self.below + np.cumsum(self.counts)])
        index = int(np.searchsorted(cumulative, q * self.n, side="left"))
        return float(self.edges[min(index, len(self.edges) - 1)])


def _histograms(start: float, stop: float, step: float) -> defaultdict[str, Histogram]:
    """One histogram per group, made on first use, all with the same bins."""
    return defaultdict(lambda: Histogram.linear(start, stop, step))


@dataclass(slots=True)
class CorpusStats:
    """What the report shows about the rows of a build, gathered in one streaming pass."""

    rows: int = 0
    clips: int = 0
    clip_seconds: Histogram = field(default_factory=lambda: Histogram.linear(0, 30, 0.25))
    words_per_second: Histogram = field(default_factory=lambda: Histogram.linear(0, 8, 0.1))
    f0_by_gender: dict[str, Histogram] = field(default_factory=lambda: _histograms(50, 400, 5))
    snr_db: Histogram = field(default_factory=lambda: Histogram.linear(-10, 60, 1))
    snr_missing: int = 0
    wer_by_backend: dict[str, Histogram] = field(default_factory=lambda: _histograms(0, 2, 0.01))
    wer_by_voice: dict[str, Histogram] = field(default_factory=lambda: _histograms(0, 2, 0.01))
    rows_with_quality: int = 0
    asr_models: Counter = field(default_factory=Counter)
    target_words_by_task: dict[str, Histogram] = field(default_factory=lambda: _histograms(0, 120, 2))
    targets_by_task: Counter = field(default_factory=Counter)
    checks: Counter = field(default_factory=Counter)  # (target task, check) -> targets failing it
    unfaithful_by_attribute: Counter = field(default_factory=Counter)  # attribute -> descriptions contradicting it
    tasks: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    rows_by: dict[str, Counter] = field(default_factory=lambda: {g: Counter() for g in ("voices", "backends", "genders")})
    seconds_by: dict[str, Counter] = field(default_factory=lambda: {g: Counter() for g in ("voices", "backends", "genders",
                                                                                          "tasks")})
    shards_read: int = 0
    samples: SampleChooser = field(default_factory=SampleChooser)

    def add_row(self, row: dict) -> None:
        self.rows += 1
        task = row.get("task") or "unknown"
        self.tasks[task] += 1
        self.splits[row.get("split") or "unknown"] += 1
        durations = [m["num_samples"] / m["sample_rate"] for m in row.get("audio_meta") or () if m["sample_rate"]]
        self.clips += len(durations)
        self.clip_seconds.add(durations)
        seconds = sum(durations)
        self.seconds_by["tasks"][task] += seconds
        voice = row.get("voice")
        backend = voice["backend"] if voice else "none"
        if voice:
            for group, key in (("voices", voice_key(voice)), ("backends", backend),
                               ("genders", voice["gender"])):
                self.rows_by[group][key] += 1
                self.seconds_by[group][key] += seconds
        para = row.get("paralinguistics")
        if para:
            self.words_per_second.add([para["speech_rate_wps"]])
            self.f0_by_gender[voice["gender"] if voice else "unknown"].add([para["f0_mean_hz"]])
            if para.get("snr_db") is None:
                self.snr_missing += 1
            else:
                self.snr_db.add([para["snr_db"]])
        quality = row.get("quality")
        if quality:
            self.rows_with_quality += 1
            self.asr_models[quality["asr_model"]] += 1
            wers = [c["wer"] for c in quality["clips"] or ()]
            self.wer_by_backend[backend].add(wers)
            self.wer_by_voice[voice_key(voice)].add(wers)
        facts = row_facts(row)
        shown = shown_texts((row.get("provenance") or {}).get("shots"))  # 1.2 shards: no provenance
        for raw in row.get("targets") or ():
            target = Target(**raw)
            self.targets_by_task[target.task] += 1
            self.target_words_by_task[target.task].add([len(normalize_words(target.response))])
            found = unfaithful(target, row.get("text") or "", facts, shown)
            # without facts check_target skips unfaithful: it is counted from ``found``, not judged twice
            failed = check_target(target, row.get("text") or "", row.get("description"))
            for check in (*failed, *(("unfaithful",) if found else ())):
                self.checks[(target.task, check)] += 1
            self.unfaithful_by_attribute.update(set(c.attribute for c in found))

    def wer_groups(self) -> list[tuple[str, str | None, Histogram]]:
        """(backend, voice key or None, clip WER histogram): each backend with clips, then each of its voices."""
        groups: list[tuple[str, str | None, Histogram]] = []
        for backend, hist in sorted(self.wer_by_backend.items()):
            if hist.n:
                groups.append((backend, None, hist))
                groups += [(backend, voice, h) for voice, h in sorted(self.wer_by_voice.items())
                           if h.n and voice.split(":", 1)[0] == backend]
        return groups

    def check_totals(self) -> dict[str, int]:
        """Targets failing each check, over all tasks, in TARGET_CHECKS order."""
        return {c: sum(n for (_, check), n in self.checks.items() if check == c) for c in TARGET_CHECKS}


def iter_rows(parquet: Path, batch_rows: int = BATCH_ROWS) -> Iterator[dict]:
    """The rows of one shard with the report's columns only (no audio bytes), a batch at a time."""
    try:
        pf = pq.ParquetFile(parquet)
    except (OSError, pa.ArrowException) as exc:
        raise AlignDataError(f"{parquet} is not readable Parquet ({exc}); run `align-data validate`") from exc
    check_schema_version((pf.schema_arrow.metadata or {}).get(META_SCHEMA_VERSION), str(parquet))
    columns = [c for c in COLUMNS if c in pf.schema_arrow.names]  # 1.1 shards have no quality column, 1.2 no provenance
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield from batch.to_pylist()


def collect(out_dir: str | Path, shard_ids: Iterable[int]) -> CorpusStats:
    """Statistics over the given shards of a build (those its manifest lists as complete)."""
    from align_data.pipeline.writers import shard_name

    stats = CorpusStats()
    for shard_id in shard_ids:
        path = Path(out_dir) / "shards" / f"{shard_name(shard_id)}.parquet"
        if not path.exists():
            raise AlignDataError(f"{path} is listed in the manifest but missing; run `align-data validate`")
        for row in iter_rows(path):
            stats.add_row(row)
            stats.samples.add(row, shard_id)
        stats.shards_read += 1
    return stats
