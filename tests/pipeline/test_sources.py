"""Sources planned from metadata and read by slice: byte ranges never split a document, the reader gives the
documents HF ``datasets`` gave, Parquet by row group, limits read only what they need, hub folders, resume."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from align_data.config import SourceConfig, load_build_config
from align_data.pipeline import reader as reader_mod
from align_data.pipeline.build import build
from align_data.pipeline.plan import plan_shards
from align_data.pipeline.sources import parquet as parquet_mod
from align_data.pipeline.sources import textfiles as tf
from align_data.pipeline.sources.slices import Piece
from align_data.pipeline.stages import read_documents
from align_data.pipeline.validate import validate_build
from tests.conftest import make_config

REPO = Path(__file__).resolve().parents[2]


def reference(path: Path, unit: str) -> list[str]:
    """The documents the ``datasets`` text loader (and the old jsonl reader) made of a file, written out: UTF-8
    with bad bytes replaced, universal newlines; lines split at \\n, paragraphs at \\n\\n with empty ones dropped."""
    text = open(path, encoding="utf-8", errors="replace").read()
    if unit == "line":
        return [line.rstrip("\n") for line in io.StringIO(text).readlines()]
    if unit == "paragraph":
        return [p for p in text.split("\n\n") if p]
    return [line.rstrip("\n") for line in io.StringIO(text).readlines() if line.strip()]


def read_cut(path: Path, unit: str, cuts: list[int]) -> list:
    """Documents read from the byte ranges between ``cuts`` (0 and the size included), numbered by offset."""
    fmt = "jsonl" if unit == "jsonl" else "txt"
    source = SourceConfig(name="s", path=str(path), format=fmt, txt_unit="line" if unit == "jsonl" else unit)
    docs = []
    for a, b in zip(cuts, cuts[1:]):
        docs += tf.read_text_piece(source, fmt, Piece(str(path), a, b, 0), True, None)
    return docs


def texts(docs) -> list[str]:
    return [d.text for d in docs]


CASES = {
    # name: (bytes, unit, cut points)
    "edge at a document start": (b"one\ntwo\nthree\n", "line", [4, 8]),
    "edge just before a newline": (b"one\ntwo\nthree\n", "line", [3, 7]),
    "CRLF cut between CR and LF": (b"one\r\ntwo\r\nthree", "line", [4, 9]),
    "lone CR ends a line": (b"one\rtwo\r\rthree", "line", [1, 4, 5, 8]),
    "no final newline": (b"first line\nlast line without newline", "line", [12, 20]),
    "multi-byte UTF-8 at the edge": ("日本語\nçà\n€uro\n".encode(), "line", [1, 2, 11, 12, 13]),
    "paragraph cut inside the blank line": (b"para one\nstill one\n\npara two\n\n\npara three\n", "paragraph",
                                           [9, 19, 20, 21, 30, 31, 32]),
    "paragraph with CRLF blank lines": (b"a a\r\n\r\nb b\r\n\r\n\r\n\r\nc c", "paragraph", [4, 5, 6, 7, 12, 14, 16]),
    "paragraph multi-byte at the edge": ("ünïcödé\n\nparagraph ñ\n\n".encode(), "paragraph", [1, 3, 10, 12, 25]),
    "jsonl with blank lines and CRLF": (b'{"text": "a"}\r\n\r\n{"text": "b"}\n  \n{"text": "c"}', "jsonl",
                                        [3, 15, 16, 17, 30, 33]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_byte_ranges_never_split_a_document(tmp_path, name):
    data, unit, cuts = CASES[name]
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    whole = read_cut(path, unit, [0, len(data)])
    cut = read_cut(path, unit, [0, *cuts, len(data)])
    assert [d.row for d in cut] == [d.row for d in whole]  # each document once, in the range it starts in
    if unit == "jsonl":
        assert texts(cut) == texts(whole) == ["a", "b", "c"]
    else:
        assert texts(cut) == texts(whole) == reference(path, unit)
    for d in whole:  # numbered by the byte offset where the document starts
        assert d.row == 0 or data[d.row - 1:d.row] in (b"\n", b"\r")


TOKENS = [b"a", b"b c", b" ", "é".encode(), "日本".encode(), b"\n", b"\n", b"\r", b"\r\n", b"\xff", b"\xe6\x97",
          b'{"text": "x y"}']


@pytest.mark.parametrize("unit", ["line", "paragraph", "jsonl"])
def test_random_files_and_cuts_read_every_document_once(tmp_path, monkeypatch, unit):
    monkeypatch.setattr(tf, "CHUNK", 3)  # tiny reads: runs of newlines cut by a read's end are scanned again
    rng = random.Random(unit)
    path = tmp_path / "f.txt"
    for _ in range(150):
        data = b"".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 30)))
        path.write_bytes(data)
        cuts = sorted({rng.randint(0, len(data)) for _ in range(rng.randint(0, 5))})
        got = read_cut(path, unit, [0, *cuts, len(data)])
        expect = reference(path, unit)
        assert len(got) == len(expect), (data, cuts)
        if unit != "jsonl":
            assert texts(got) == expect, (data, cuts)
        source = SourceConfig(name="s", path=str(path), format="jsonl" if unit == "jsonl" else "txt",
                              txt_unit="line" if unit == "jsonl" else unit)
        counted = tf._cut_by_count([str(path)], [len(data)], tf.unit_of(source, source.format), 2, None, False, None)
        assert sum(s.docs for s in counted) == len(expect) and all(s.docs <= 2 for s in counted)


def test_the_demo_plan_and_documents_are_those_of_the_old_reader():
    import datasets

    cfg = load_build_config(REPO / "configs/demo.toml")
    specs = plan_shards(cfg)
    # the plan the datasets-based reader made: 40 documents, 4 a shard, numbered 0..39
    assert [(s.start, s.stop, s.docs) for s in specs] == [(i, i + 4, 4) for i in range(0, 40, 4)]
    old = datasets.load_dataset("text", data_files=[cfg.sources[0].path], sample_by="paragraph", split="train",
                                encoding_errors="replace")
    docs = [d for s in specs for d in read_documents(s, cfg)]
    assert [d.text for d in docs] == old["text"]
    assert [(d.row, d.doc_id) for d in docs] == [(i, str(i)) for i in range(40)]


def test_a_large_source_is_cut_by_size_and_every_document_is_read_once(tmp_path, monkeypatch):
    lines = [f"Line number {i} is a sentence with enough words in it." for i in range(60)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(tf, "SCAN_BYTES", 100)  # "large": planned from the size alone
    cfg = make_config(path, sources=[{"name": "big", "path": str(path), "format": "txt", "txt_unit": "line"}],
                      segment={"min_words": 2, "max_words": 40}, shards={"docs_per_shard": 8},
                      interleave={"task_weights": {"interleaved": 1.0}})
    specs = plan_shards(cfg)
    assert all(s.by_offset and s.docs is None and len(s.pieces) == 1 for s in specs)
    assert 6 <= len(specs) <= 9  # about 8 documents' bytes each
    docs = [d for s in specs for d in read_documents(s, cfg)]
    assert [d.text for d in docs] == lines
    assert [d.row for d in docs] == [sum(len(x) + 1 for x in lines[:i]) for i in range(60)]  # byte offsets
    summary = build(cfg, tmp_path / "out")
    assert summary.manifest["input_docs"] == 60 and summary.manifest["planned_docs"] is None
    assert validate_build(tmp_path / "out") == []


class _Counting(io.BytesIO):
    read_bytes = 0

    def read(self, n=-1):
        data = super().read(n)
        _Counting.read_bytes += len(data)
        return data


def test_a_limit_reads_only_what_its_documents_need(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"".join(f"Paragraph {i} has a few words.\n\n".encode() for i in range(100_000)))  # 3 MB
    monkeypatch.setattr(tf, "open_binary", lambda p, options=None: _Counting(Path(p).read_bytes()))
    cfg = make_config(path, shards={"docs_per_shard": 4})
    specs = plan_shards(cfg, limit=10)
    assert [s.docs for s in specs] == [4, 4, 2]
    docs = [d for s in specs for d in read_documents(s, cfg)]
    assert [d.text for d in docs] == [f"Paragraph {i} has a few words." for i in range(10)]
    assert _Counting.read_bytes < 100_000  # not the 3 MB


def _parquet_folder(root: Path) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    texts_all = []
    for f in range(3):
        rows = [f"File {f} row {r} is some text." for r in range(7)]
        pq.write_table(pa.table({"body": rows, "key": [f"k{f}-{r}" for r in range(7)]}),
                       root / f"part-{f}.parquet", row_group_size=3)
        texts_all += rows
    return texts_all


def test_parquet_is_planned_by_row_group_from_the_footers(tmp_path):
    expected = _parquet_folder(tmp_path / "pq")
    cfg = make_config(tmp_path, sources=[{"name": "p", "path": str(tmp_path / "pq/*.parquet"), "text_column": "body",
                                          "id_column": "key"}], shards={"docs_per_shard": 5})
    specs = plan_shards(cfg)
    assert [s.docs for s in specs] == [5, 5, 5, 5, 1]
    assert {(p.path.rsplit("/", 1)[-1], p.group) for p in specs[1].pieces} == {("part-0.parquet", 1),
                                                                                ("part-0.parquet", 2),
                                                                                ("part-1.parquet", 0)}
    docs = [d for s in specs for d in read_documents(s, cfg)]
    assert [d.text for d in docs] == expected and [d.row for d in docs] == list(range(21))
    assert docs[7].doc_id == "k1-0"


def test_a_parquet_limit_reads_only_the_footers_it_needs(tmp_path):
    _parquet_folder(tmp_path / "pq")
    (tmp_path / "pq/part-9.parquet").write_bytes(b"not parquet at all")
    cfg = make_config(tmp_path, sources=[{"name": "p", "path": str(tmp_path / "pq/*.parquet"), "text_column": "body"}])
    assert sum(s.docs for s in plan_shards(cfg, limit=9)) == 9  # the broken last file is never opened
    specs = plan_shards(cfg)
    assert len(specs) == 1 and "part-9.parquet is not a readable Parquet file" in specs[0].problem


def test_a_parquet_row_group_read_by_consecutive_shards_is_decoded_once(tmp_path, monkeypatch):
    _parquet_folder(tmp_path / "pq")
    cfg = make_config(tmp_path, sources=[{"name": "p", "path": str(tmp_path / "pq/*.parquet"), "text_column": "body"}],
                      shards={"docs_per_shard": 1})
    opened = []
    real = parquet_mod.open_binary
    monkeypatch.setattr(parquet_mod, "open_binary", lambda p, o=None: opened.append(p) or real(p, o))
    specs = plan_shards(cfg)
    opened.clear()
    for s in specs[:3]:  # rows 0, 1, 2: row group 0 of part-0
        read_documents(s, cfg)
    assert len(opened) == 1


def test_hub_datasets_are_planned_by_their_file_list(tmp_path):
    expected = _parquet_folder(tmp_path / "hub" / "data")
    cfg = make_config(tmp_path, sources=[{"name": "h", "path": str(tmp_path / "hub"), "format": "hf",
                                          "text_column": "body"}], shards={"docs_per_shard": 8})
    specs = plan_shards(cfg)
    assert {s.reader for s in specs} == {"parquet"} and sum(s.docs for s in specs) == 21
    assert [d.text for s in specs for d in read_documents(s, cfg)] == expected


def test_hub_datasets_of_other_files_are_streamed(tmp_path):
    folder = tmp_path / "csvset"
    folder.mkdir()
    (folder / "train.csv").write_text("text,n\n" + "".join(f"Row {i} of the csv.,{i}\n" for i in range(5)))
    cfg = make_config(tmp_path, sources=[{"name": "c", "path": str(folder), "format": "hf"}])
    specs = plan_shards(cfg)
    assert len(specs) == 1 and specs[0].reader == "stream" and specs[0].docs is None
    assert [d.text for d in read_documents(specs[0], cfg)] == [f"Row {i} of the csv." for i in range(5)]
    limited = plan_shards(cfg, limit=2)
    assert [d.text for d in read_documents(limited[0], cfg)] == ["Row 0 of the csv.", "Row 1 of the csv."]


def test_nothing_is_cached_while_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"Document {i} has words." for i in range(50)))
    cfg = make_config(path)
    for s in plan_shards(cfg):
        read_documents(s, cfg)
    assert not (tmp_path / "hf-cache").exists()


def test_resume_redoes_a_shard_planned_differently(tmp_path, interleaved_config):
    first = build(interleaved_config, tmp_path / "o", limit=1)  # shard 0 = document [0, 1)
    assert first.planned == 1
    # the full plan's shard 0 is documents [0, 2): same config, intact files, but not what it read
    again = build(interleaved_config, tmp_path / "o", resume=True)
    assert again.skipped == 0 and again.written == 2
    plan = json.loads((tmp_path / "o/plan.json").read_text())["shards"]
    assert [s["docs"] for s in plan] == [2, 1] and validate_build(tmp_path / "o") == []
    assert build(interleaved_config, tmp_path / "o", resume=True).skipped == 2


def test_counting_a_source_reads_it(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\nnot json\n')
    assert reader_mod.count_documents(SourceConfig(name="s", path=str(path))) == 3
