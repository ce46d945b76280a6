"""The streaming loader: the light scan, epochs over row-group windows, the recipe mixture, length bucketing, and
that a restored position continues exactly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from align_data.errors import AlignDataError
from align_data.trainer.data import load_examples, record_examples
from align_data.trainer.stream import BatchStream, batch_stream, scan_shards


@pytest.fixture(scope="module")
def tokenizer(tiny_models: tuple[Path, Path]):
    return AutoTokenizer.from_pretrained(tiny_models[1])


@pytest.fixture(scope="module")
def split_build(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny build's rows over two shards of one-row row groups (five units to window and shuffle)."""
    root = tmp_path_factory.mktemp("split-build")
    (root / "shards").mkdir()
    table = pq.read_table(tiny_build / "shards" / "00000.parquet")
    pq.write_table(table.slice(0, 3), root / "shards" / "00000.parquet", row_group_size=1)
    pq.write_table(table.slice(3), root / "shards" / "00001.parquet", row_group_size=1)
    return root


def _stream(build: Path, tokenizer, **kwargs) -> BatchStream:
    settings = {"task_weights": None, "batch_size": 2, "bucket_batches": 1, "shuffle_window": 2, "seed": 0,
                **kwargs}
    index = scan_shards(build, tasks=None, split="train")

    def make(record):
        return record_examples(record, tokenizer, Counter(), max_target_tokens=32, split="train")

    return batch_stream(index, make, **settings)


def _keys(stream: BatchStream, batches: int) -> list[list[str]]:
    return [[e.key for e in stream.next()] for _ in range(batches)]


def test_scan_counts_what_loading_everything_counts(split_build: Path, tokenizer) -> None:
    index = scan_shards(split_build, tasks=None, split="train")
    _, counts = load_examples(split_build, tokenizer, max_target_tokens=32, split="train")
    assert {k: v for k, v in index.counts.items()} == {k: v for k, v in counts.items() if k != "targets_cut"}
    assert index.examples == {"continuation": 1, "description": 1, "interleaved": 2}
    assert index.units["interleaved"] == ((0, 1), (0, 2))  # file 0, row groups 1 and 2
    with pytest.raises(AlignDataError, match="no usable training examples"):
        scan_shards(split_build, tasks=["translation"], split="train")


def test_each_epoch_covers_every_example_once_in_a_seeded_order(split_build: Path, tokenizer) -> None:
    stream = _stream(split_build, tokenizer)
    keys = [k for batch in _keys(stream, 6) for k in batch]
    epochs = [keys[i: i + 4] for i in range(0, 12, 4)]
    assert all(sorted(e) == ["tiny-000/0", "tiny-001/0", "tiny-002/0", "tiny-003/0"] for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled per epoch
    assert _keys(_stream(split_build, tokenizer), 6) == [keys[i: i + 2] for i in range(0, 12, 2)]
    assert _keys(_stream(split_build, tokenizer, seed=1), 6) != [keys[i: i + 2] for i in range(0, 12, 2)]


def test_task_weights_set_the_mixture(split_build: Path, tokenizer) -> None:
    weights = {"continuation": 3.0, "interleaved": 1.0, "description": 0.0}
    stream = _stream(split_build, tokenizer, task_weights=weights, batch_size=8)
    drawn = Counter(e.recipe for _ in range(60) for e in stream.next())
    assert set(drawn) == {"continuation", "interleaved"} and sum(drawn.values()) == 480
    assert drawn["continuation"] / 480 == pytest.approx(0.75, abs=0.06)
    # Within a recipe the stream still walks its own examples evenly.
    inter = Counter(e.key for _ in range(30) for e in _stream(split_build, tokenizer, task_weights={"interleaved": 1},
                                                               batch_size=2).next())
    assert set(inter) == {"tiny-001/0", "tiny-002/0"}
    with pytest.raises(AlignDataError, match="task_weights names mtbi"):
        _stream(split_build, tokenizer, task_weights={"mtbi": 1.0, "continuation": 1.0})


def _padding(batches) -> int:
    return sum(max(e.length() for e in b) * len(b) - sum(e.length() for e in b) for b in batches)


def test_length_bucketing_reduces_padding(split_build: Path, tokenizer) -> None:
    plain, bucketed = _stream(split_build, tokenizer), _stream(split_build, tokenizer, bucket_batches=8)
    plain_batches = [plain.next() for _ in range(32)]
    bucketed_batches = [bucketed.next() for _ in range(32)]
    assert Counter(e.key for b in plain_batches for e in b) == Counter(e.key for b in bucketed_batches for e in b)
    assert _padding(bucketed_batches) < 0.5 * _padding(plain_batches), (_padding(bucketed_batches),
                                                                       _padding(plain_batches))


@pytest.mark.parametrize("kwargs", [{}, {"bucket_batches": 3, "shuffle_window": 1},
                                    {"task_weights": {"continuation": 1, "interleaved": 2}, "bucket_batches": 2}])
def test_a_restored_position_continues_exactly(split_build: Path, tokenizer, kwargs: dict) -> None:
    straight = _keys(_stream(split_build, tokenizer, **kwargs), 14)
    first = _stream(split_build, tokenizer, **kwargs)
    head = _keys(first, 5)
    state = json.loads(json.dumps(first.state()))  # as trainer_state.json keeps it
    resumed = _stream(split_build, tokenizer, **kwargs)
    resumed.restore(state)
    assert head + _keys(resumed, 9) == straight
