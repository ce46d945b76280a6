"""Training examples streamed from Parquet shards: per-recipe streams over seeded windows of row groups, mixed by
weight, drawn into length-bucketed micro-batches; the position is a small JSON dict a resume restores exactly.

Memory is bounded by one window of row groups per recipe plus one bucket pool of examples; the whole corpus is
read once up front for its light columns only (task, split, targets, segments, audio lengths: no audio bytes).
"""

from __future__ import annotations

import copy
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.schemas import AudioClip, Record, Segment, SourceRef, Target, check_schema_version, record_from_row
from align_data.schemas.arrow import META_SCHEMA_VERSION
from align_data.trainer.data import Example, no_examples_error, shard_files, usable_targets

SCAN_COLUMNS = ["task", "split", "targets", "segments", "audio_meta"]
MIX_STREAM, POOL_STREAM = 1, 2  # tags that keep the mixture's and the pools' RNG streams apart
ALL = "*"  # the one stream of every recipe, in shard proportions, when no task_weights are set

Unit = tuple[int, int]  # (file index, row group)


def recipe_of(record: Record, target: Target) -> str:
    """The mixture group of an example: the row's task, or the target's for rows written without one."""
    return record.task or target.task


def _light_record(row: dict[str, Any]) -> Record:
    """A Record with only what filtering needs (no text, no audio bytes) from the SCAN_COLUMNS of a row."""
    return Record(id="", shard_id=0, source=SourceRef("", "", 0), text="", task=row["task"], split=row["split"],
                  segments=tuple(Segment(**s) for s in row["segments"] or ()),
                  audio=tuple(AudioClip(b"", m["sample_rate"], m["num_samples"]) for m in row["audio_meta"] or ()),
                  targets=tuple(Target(**t) for t in row["targets"] or ()))


@dataclass(frozen=True, slots=True)
class ShardIndex:
    """Where each recipe's usable rows are, how many examples it has, and rows/targets skipped by reason."""

    files: tuple[Path, ...]
    units: dict[str, tuple[Unit, ...]]
    examples: dict[str, int]
    counts: dict[str, int]


def scan_shards(shards_dir: Path, *, tasks: list[str] | None, split: str | None) -> ShardIndex:
    """Read the light columns of every row group once: usable examples per recipe and the row groups holding them."""
    files = shard_files(shards_dir)
    counts: Counter[str] = Counter()
    units: dict[str, list[Unit]] = {}
    examples: Counter[str] = Counter()
    seen_tasks: set[str] = set()
    for f, path in enumerate(files):
        parquet = pq.ParquetFile(path)
        check_schema_version((parquet.schema_arrow.metadata or {}).get(META_SCHEMA_VERSION), str(path))
        for group in range(parquet.num_row_groups):
            found: set[str] = set()
            for row in parquet.read_row_group(group, columns=SCAN_COLUMNS).to_pylist():
                record = _light_record(row)
                seen_tasks.update(t.task for t in record.targets)
                for index in usable_targets(record, counts, tasks=tasks, split=split):
                    recipe = recipe_of(record, record.targets[index])
                    examples[recipe] += 1
                    found.add(recipe)
            for recipe in found:
                units.setdefault(recipe, []).append((f, group))
    counts["examples"] = sum(examples.values())
    if not counts["examples"]:
        raise no_examples_error(shards_dir, counts, seen_tasks, tasks)
    return ShardIndex(tuple(files), {r: tuple(u) for r, u in sorted(units.items())}, dict(sorted(examples.items())),
                      dict(counts))


MakeExamples = Callable[[Record], list[Example]]


class RecipeStream:
    """One recipe's examples, epoch after epoch: its row groups in a seeded order per epoch, read ``window`` at a
    time, each window's examples shuffled. Position: [epoch, window, offset]."""

    def __init__(self, index: ShardIndex, recipe: str, make: MakeExamples, seed: int, window: int) -> None:
        self.files, self.recipe, self.make, self.window = index.files, recipe, make, window
        self.units = (tuple(sorted(set().union(*index.units.values()))) if recipe == ALL else index.units[recipe])
        self.key = [seed, zlib.crc32(recipe.encode())]
        self.position = [0, 0, 0]
        self._loaded: tuple[tuple[int, int], list[Example]] | None = None

    def _read(self, unit: Unit) -> list[Example]:
        f, group = unit
        table = pq.ParquetFile(self.files[f]).read_row_group(group)
        if self.recipe == ALL:
            return [ex for row in table.to_pylist() for ex in self.make(record_from_row(row))]
        table = table.filter(pc.or_kleene(pc.equal(table["task"], self.recipe), pc.is_null(table["task"])))
        return [ex for row in table.to_pylist() for ex in self.make(record_from_row(row)) if ex.recipe == self.recipe]

    def _examples(self, epoch: int, window: int) -> list[Example]:
        if self._loaded is None or self._loaded[0] != (epoch, window):
            order = np.random.default_rng([*self.key, epoch]).permutation(len(self.units))
            chosen = order[window * self.window: (window + 1) * self.window]
            examples = [ex for i in chosen for ex in self._read(self.units[int(i)])]
            shuffle = np.random.default_rng([*self.key, epoch, window]).permutation(len(examples))
            self._loaded = ((epoch, window), [examples[int(i)] for i in shuffle])
        return self._loaded[1]

    def next(self) -> Example:
        windows = -(-len(self.units) // self.window)
        for _ in range(windows + 1):  # at most one full epoch of empty windows before giving up
            epoch, window, offset = self.position
            examples = self._examples(epoch, window)
            if offset < len(examples):
                self.position = [epoch, window, offset + 1]
                return examples[offset]
            self.position = [epoch + 1, 0, 0] if window + 1 >= windows else [epoch, window + 1, 0]
        raise AlignDataError(f"recipe {self.recipe!r}: its row groups gave no examples when read; the shards changed "
                             "since training started, or are inconsistent (run `align-data validate`)")


def mixture_weights(index: ShardIndex, task_weights: dict[str, float] | None) -> dict[str, float]:
    """The recipes to draw from and their weights: the configured ones, or ALL (one stream, the shards' own
    proportions, each example once per epoch)."""
    if task_weights is None:
        return {ALL: 1.0}
    missing = sorted(r for r, w in task_weights.items() if w > 0 and not index.examples.get(r))
    if missing:
        raise AlignDataError(f"task_weights names {', '.join(missing)} but the shards have no usable examples of it "
                             f"(usable: {index.examples}); set its weight to 0 or build with that task")
    return {r: float(w) for r, w in sorted(task_weights.items()) if w > 0}


class MixedStream:
    """Examples drawn from the recipe streams by weight; draw n picks its recipe from an RNG seeded (seed, n)."""

    def __init__(self, streams: dict[str, RecipeStream], weights: dict[str, float], seed: int) -> None:
        self.streams, self.seed = streams, seed
        self.names = sorted(weights)
        total = sum(weights[n] for n in self.names)
        self.p = np.array([weights[n] / total for n in self.names])
        self.draws = 0

    def next(self) -> Example:
        pick = np.random.default_rng([self.seed, MIX_STREAM, self.draws]).choice(len(self.names), p=self.p)
        self.draws += 1
        return self.streams[self.names[int(pick)]].next()

    def state(self) -> dict[str, Any]:
        return {"draws": self.draws, "recipes": {n: list(s.position) for n, s in sorted(self.streams.items())}}

    def restore(self, state: dict[str, Any]) -> None:
        self.draws = int(state["draws"])
        for name, position in state["recipes"].items():
            self.streams[name].position = [int(x) for x in position]


class BatchStream:
    """Micro-batches from a mixed stream: pools of ``bucket_batches`` micro-batches of examples are sorted by
    length, cut into micro-batches and those shuffled (seeded by pool). Position: pool, next batch, the mixture's
    state at the pool's start."""

    def __init__(self, mixed: MixedStream, batch_size: int, bucket_batches: int, seed: int) -> None:
        self.mixed, self.batch_size, self.bucket_batches, self.seed = mixed, batch_size, bucket_batches, seed
        self.pool, self.batch = 0, 0
        self.pool_start = mixed.state()
        self._batches: list[list[Example]] | None = None

    def _fill(self) -> list[list[Example]]:
        if self._batches is None:
            self.mixed.restore(self.pool_start)
            drawn = [self.mixed.next() for _ in range(self.batch_size * self.bucket_batches)]
            if self.bucket_batches > 1:
                drawn.sort(key=Example.length)  # stable: equal lengths keep their drawn order
            batches = [drawn[i: i + self.batch_size] for i in range(0, len(drawn), self.batch_size)]
            order = np.random.default_rng([self.seed, POOL_STREAM, self.pool]).permutation(len(batches))
            self._batches = [batches[int(i)] for i in order]
        return self._batches

    def next(self) -> list[Example]:
        """The next micro-batch of ``batch_size`` examples."""
        batches = self._fill()
        out = batches[self.batch]
        self.batch += 1
        if self.batch == len(batches):
            self.pool, self.batch, self.pool_start, self._batches = self.pool + 1, 0, self.mixed.state(), None
        return out

    def state(self) -> dict[str, Any]:
        """The position, JSON-ready: a stream restored from it yields exactly what this one yields next."""
        return {"pool": self.pool, "batch": self.batch, "pool_start": copy.deepcopy(self.pool_start)}

    def restore(self, state: dict[str, Any]) -> None:
        self.pool, self.batch = int(state["pool"]), int(state["batch"])
        self.pool_start, self._batches = copy.deepcopy(state["pool_start"]), None


def batch_stream(index: ShardIndex, make: MakeExamples, *, task_weights: dict[str, float] | None, batch_size: int,
                 bucket_batches: int, shuffle_window: int, seed: int) -> BatchStream:
    """The training batches of a scanned build, at the start (``restore`` a saved state to continue)."""
    weights = mixture_weights(index, task_weights)
    streams = {r: RecipeStream(index, r, make, seed, shuffle_window) for r in weights}
    return BatchStream(MixedStream(streams, weights, seed), batch_size, bucket_batches, seed)
