"""benchmarks/bench_alignment.py: its corpus from gensim's Lee articles, the nested training subsets, its table."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_alignment  # noqa: E402


def test_lee_corpus_is_real_news_text_one_document_a_paragraph(tmp_path: Path) -> None:
    path, counts = bench_alignment.lee_corpus(tmp_path)
    docs = path.read_text(encoding="utf-8").split("\n\n")
    assert counts["documents"] == len(docs) == 350  # 300 + 50 articles
    assert counts["sentences"] > 2500 and counts["words"] > 60_000
    assert docs[0].startswith("Hundreds of people have been forced to vacate their homes")
    assert all("\n" not in d.strip() for d in docs)
    before = path.stat().st_mtime_ns
    assert bench_alignment.lee_corpus(tmp_path)[1] == counts and path.stat().st_mtime_ns == before  # not rewritten


def _build(root: Path, splits: list[list[str]]) -> Path:
    (root / "shards").mkdir(parents=True)
    for i, column in enumerate(splits):
        pq.write_table(pa.table({"split": column}), root / "shards" / f"{i:05d}.parquet")
    return root


def test_subsets_are_prefixes_of_the_build_by_training_rows(tmp_path: Path) -> None:
    build = _build(tmp_path / "build", [["train"] * 4 + ["heldout"], ["train"] * 3, ["heldout_task", "train"]])
    small, held = bench_alignment.subset(build, 6, tmp_path / "out")
    assert held == 7 and sorted(p.name for p in (small / "shards").iterdir()) == ["00000.parquet", "00001.parquet"]
    assert (small / "shards" / "00000.parquet").resolve() == (build / "shards" / "00000.parquet").resolve()
    everything, held = bench_alignment.subset(build, 100, tmp_path / "out")
    assert held == 8 and len(list((everything / "shards").iterdir())) == 3
    again, held = bench_alignment.subset(build, 100, tmp_path / "out")  # relinked, not doubled
    assert held == 8 and len(list((again / "shards").iterdir())) == 3


def _eval(drop: float, cosine: float) -> dict:
    similar = {"bleu": 10.0, "chrf": 20.0, "cosine": cosine}
    task = {"examples": 5, "speech_vs_text": similar}
    return {"examples": 12, "relative_drop": drop, "gap_closed": drop / 2,
            "per_task": {"continuation": {"examples": 7, "relative_drop": drop},
                         "summarize": {"examples": 5, "relative_drop": -0.1}},
            "alignment": {"examples": 10, "speech_vs_text": similar,
                          "per_task": {"continuation": task, "summarize": task}},
            "splits": {"heldout": {"relative_drop": drop, "alignment": {"speech_vs_text": similar}}}}


def test_table_lists_untrained_first_then_sizes_with_per_task_rows() -> None:
    runs = {2000: {"rows": 2010, "steps": 1000, "eval": _eval(0.3, 0.55)},
            0: {"rows": 0, "steps": 0, "eval": _eval(0.0, 0.05)},
            500: {"rows": 512, "steps": 250, "eval": _eval(0.2, 0.25)}}
    table = bench_alignment.summarize(runs)
    assert list(table) == ["0", "500", "2000"] and table["0"]["label"] == "untrained"
    assert table["2000"]["cosine"] == pytest.approx(0.55) and table["2000"]["splits"]["heldout"]["cosine"] == 0.55
    assert table["500"]["per_task"]["summarize"]["drop"] == pytest.approx(-0.1)
    text = bench_alignment.markdown(table, "header")
    assert "| 2010 rows | 2010 | 1000 | 12 | 30.0% | 15.0% | 10 | 10.0 | 20.0 | 0.550 |" in text
    assert "| untrained | summarize | 5 | -10.0% | 5 | 10.0 | 20.0 | 0.050 |" in text
