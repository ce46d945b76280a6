"""A corpus of hostile inputs: every one ends as a row, a filtered record or an error record; the job finishes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from align_data.cli import app
from align_data.config import build_config_from_dict
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from tests.conftest import ESPEAK_VOICES

TWO = " It goes on for a second sentence of words."  # a next segment, so interleaving keeps the row

TXT_LINES = [  # one document per line
    b"",                                                      # 1 empty line
    b"   \t   ",                                              # 2 whitespace only
    b"A" * 100_000,                                           # 3 a 100,000-character line
    b"x" * 5000 + TWO.encode(),                               # 4 a single 5,000-character word
    bytes(range(11, 256)),                                    # 5 binary garbage (no newline byte)
    b"caf\xe9 au lait is \xff\xfe not UTF-8 at all." + TWO.encode(),  # 6 invalid UTF-8
    b"nul\x00bytes\x00inside the sentence here." + TWO.encode(),      # 7 NUL bytes
    "😀🎉🔥 🙈🙉🙊".encode(),                                  # 8 emoji only
    ("שלום עולם, זה טקסט בעברית מימין לשמאל." + TWO).encode(),  # 9 right-to-left text
    ("Mixed 日本語 and English and русский words together." + TWO).encode(),  # 10 mixed scripts
    b"-rf / is not a flag here, only words." + TWO.encode(),  # 11 begins with -
    b"--help me please, said the option parser." + TWO.encode(),  # 12 begins with --
    b"<speak><prosody rate='x-fast'>tags inside</prosody></speak> are only text." + TWO.encode(),  # 13
    b"$(rm -rf ~); `reboot` && echo pwned | cat > /etc/passwd now." + TWO.encode(),  # 14 shell metachars
    b"windows line endings end this line here." + TWO.encode() + b"\r",  # 15 CRLF
    b"\xef\xbb\xbfA byte order mark starts this ordinary line." + TWO.encode(),  # 16 BOM
    b"A perfectly normal sentence that should become a row." + TWO.encode(),  # 17 control
]

JSONL_LINES = [
    json.dumps({"text": "A valid json line about the quiet harbour at dawn." + TWO}),  # 18 fine
    '{"text": "a truncated line that never clo',                                  # 19 truncated
    json.dumps({"body": "no text field here"}),                                   # 20 missing field
    json.dumps(["an", "array", "not", "an", "object"]),                           # 21 not an object
    json.dumps({"text": 12345}),                                                  # 22 text not a string
]


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "hostile.txt").write_bytes(b"\r\n".join(TXT_LINES[:8]) + b"\n" + b"\n".join(TXT_LINES[8:]) + b"\n")
    (root / "broken.jsonl").write_text("\n".join(JSONL_LINES) + "\n")
    pq.write_table(pa.table({"body": ["no text column in this file"]}), root / "notext.parquet")  # 23
    (root / "empty.txt").write_bytes(b"")                                                        # 24
    sources = [
        {"name": "hostile", "path": str(root / "hostile.txt"), "format": "txt", "txt_unit": "line"},
        {"name": "broken", "path": str(root / "broken.jsonl"), "format": "jsonl"},
        {"name": "notext", "path": str(root / "notext.parquet"), "format": "parquet"},
        {"name": "empty", "path": str(root / "empty.txt"), "format": "txt"},
        {"name": "missing", "path": str(root / "missing.txt"), "format": "txt"},                 # 25
    ]
    cfg = build_config_from_dict({
        "seed": 0, "sources": sources, "segment": {"min_words": 4, "max_words": 14},
        "interleave": {"task_weights": {"interleaved": 1.0}}, "shards": {"docs_per_shard": 4},
        "runner": {"kind": "local"}, "tts": {"voices": ESPEAK_VOICES}})
    summary = build(cfg, root / "out")
    assert not summary.failed, summary.failed
    return root / "out", summary.manifest


def _outcomes(out: Path) -> dict[tuple[str, str], list[str]]:
    """(source, doc id) → what became of each of its segments: 'row', 'filtered:<reason>', 'error:<kind>'."""
    seen: dict[tuple[str, str], list[str]] = {}
    for path in sorted((out / "shards").glob("*.parquet")):
        for row in pq.read_table(path, columns=["source"]).to_pylist():
            seen.setdefault((row["source"]["dataset"], row["source"]["doc_id"]), []).append("row")
    for kind in ("filtered", "errors"):
        for path in sorted((out / kind).glob("*.jsonl")):
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                src = entry["source"]
                seen.setdefault((src["dataset"], src["doc_id"]), []).append(f"{kind[:-1] if kind == 'errors' else 'filtered'}:{entry['kind']}")
    return seen


def test_every_input_is_a_row_a_filtered_or_an_error_record(hostile_build):
    out, m = hostile_build
    assert m["rows"] + m["errors"] + m["filtered"] == m["candidates"]
    assert m["rows"] > 0
    outcomes = _outcomes(out)
    hostile_docs = {doc for (src, doc) in outcomes if src == "hostile"}
    assert len(hostile_docs) >= len(TXT_LINES)  # every line (garbage may split into more) has an outcome
    assert all(("broken", str(i)) in outcomes for i in range(len(JSONL_LINES)))
    assert validate_build(out) == []


def test_each_hostile_input_gets_the_outcome_it_deserves(hostile_build):
    out, _ = hostile_build
    outcomes = _outcomes(out)

    def of(source: str, doc: str) -> list[str]:
        return outcomes[(source, doc)]

    assert of("hostile", "0") == ["filtered:empty"]
    assert of("hostile", "1") == ["filtered:empty"]  # whitespace collapses to nothing
    assert of("hostile", "2") == ["filtered:too_long"]
    assert of("hostile", "5") == ["filtered:bad_encoding"]
    assert "row" in of("hostile", "16")  # the control line comes through
    for doc in ("10", "11", "13"):  # dashes and shell metacharacters are text, spoken like any other
        assert "row" in of("hostile", doc), (doc, of("hostile", doc))
    assert "row" in of("broken", "0")
    assert of("broken", "1")[0] == "error:bad_input"
    assert of("broken", "2") == of("broken", "3") == of("broken", "4") == ["error:bad_input"]
    assert of("notext", "") == ["error:source_unreadable"]
    assert of("empty", "") == ["filtered:empty_source"]
    assert of("missing", "") == ["error:source_unreadable"]
    errors = [json.loads(line) for p in (out / "errors").glob("*.jsonl") for line in p.read_text().splitlines()]
    messages = {e["source"]["dataset"]: e["message"] for e in errors if e["kind"] == "source_unreadable"}
    assert "no column 'text'" in messages["notext"] and "missing.txt" in messages["missing"]


def test_inspect_shows_the_counts(hostile_build, monkeypatch):
    from align_data import cli

    out, m = hostile_build
    monkeypatch.setattr(cli.console, "width", 250)  # wide enough that no reason is cut off
    result = CliRunner().invoke(app, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    for word in ("source_unreadable", "bad_input", "bad_encoding", "empty_source", str(m["candidates"])):
        assert word in result.output, word


def test_a_build_whose_every_source_is_unreadable_stops_with_one_message(tmp_path):
    from align_data.errors import AlignDataError

    cfg = build_config_from_dict({"sources": [{"name": "gone", "path": str(tmp_path / "gone.txt"),
                                               "format": "txt"}], "runner": {"kind": "local"}})
    with pytest.raises(AlignDataError, match="(?s)no source can be read.*gone.txt"):
        build(cfg, tmp_path / "out")
