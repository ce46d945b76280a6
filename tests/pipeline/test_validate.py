"""validate finds every kind of damage, names the shard and the reason, and the CLI exits 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from align_data.cli import app
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from align_data.files import sha256_file
from align_data.schemas.arrow import META_SCHEMA_VERSION


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, ) -> Path:
    from tests.conftest import TINY_CORPUS, make_config

    root = tmp_path_factory.mktemp("valid")
    (root / "corpus.txt").write_text(TINY_CORPUS)
    out = root / "out"
    build(make_config(root / "corpus.txt", interleave={"task_weights": {"interleaved": 1.0}}), out)
    assert validate_build(out) == []
    return out


@pytest.fixture
def out(pristine, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(pristine, copy)
    return copy


def _reseal(out: Path, rel: str) -> None:
    """Update the sidecar's sha256 of ``rel`` (a tamper that also forged the sidecar)."""
    sidecar_path = out / "shards" / (Path(rel).stem + ".json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["files"][rel] = {"sha256": sha256_file(out / rel), "bytes": (out / rel).stat().st_size}
    sidecar_path.write_text(json.dumps(sidecar, sort_keys=True, indent=1))


def _rewrite_parquet(out: Path, rel: str, change) -> None:
    table = pq.read_table(out / rel)
    table = change(table)
    pq.write_table(table, out / rel)
    _reseal(out, rel)


def _problems(out: Path) -> str:
    return "\n".join(validate_build(out))


@pytest.mark.parametrize("rel", ["shards/00000.parquet", "shards/00001.tar", "errors/00000.jsonl",
                                 "filtered/00001.jsonl"])
def test_flipped_byte_in_any_file(out, rel):
    path = out / rel
    data = bytearray(path.read_bytes() or b"\0")
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert f"{rel} does not match its sha256" in _problems(out)


@pytest.mark.parametrize("rel", ["shards/00000.parquet", "shards/00000.tar"])
def test_truncated_file_even_with_a_forged_sidecar(out, rel):
    path = out / rel
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert f"{rel} does not match its sha256" in _problems(out)
    _reseal(out, rel)
    kind = "Parquet" if rel.endswith("parquet") else "tar"
    assert f"shard 0: {Path(rel).name} is not a readable {kind}" in _problems(out)


def test_missing_shard_and_extra_file(out):
    for suffix in ("parquet", "tar", "json"):
        (out / f"shards/00001.{suffix}").unlink()
    (out / "shards/00007.parquet").write_bytes(b"stray")
    problems = _problems(out)
    assert "shard 1: missing (no sidecar)" in problems
    assert "unknown file shards/00007.parquet" in problems


def test_sidecar_counts_that_disagree_with_the_files(out):
    path = out / "shards/00000.json"
    sidecar = json.loads(path.read_text())
    sidecar["rows"] += 1
    sidecar["candidates"] += 1
    sidecar["tasks"] = {"interleaved": sidecar["tasks"]["interleaved"] + 1}
    path.write_text(json.dumps(sidecar, sort_keys=True, indent=1))
    problems = _problems(out)
    assert "shard 0: Parquet has" in problems and "sidecar says" in problems
    assert "shard 0: sidecar tasks" in problems
    assert "shard 0: its sidecar changed after manifest.json was written" in problems
    assert "manifest.json: rows" in problems


def test_unknown_schema_version(out):
    def bump(table: pa.Table) -> pa.Table:
        return table.replace_schema_metadata({**table.schema.metadata, META_SCHEMA_VERSION: b"9.0"})

    _rewrite_parquet(out, "shards/00001.parquet", bump)
    assert "schema version 9.0 is not readable" in _problems(out)


def test_duplicate_ids_across_shards(out):
    shutil.copy(out / "shards/00000.parquet", out / "shards/00001.parquet")
    _reseal(out, "shards/00001.parquet")
    assert "shard 1: duplicate id" in _problems(out)


def test_audio_that_does_not_decode_or_disagrees_with_its_duration(out):
    def garble(table: pa.Table) -> pa.Table:
        rows = table.to_pylist()
        rows[0]["audio"][0]["bytes"] = b"fLaC" + b"\0" * 40
        rows[1]["audio_meta"][0]["num_samples"] += 1600
        return pa.Table.from_pylist(rows, schema=table.schema)

    _rewrite_parquet(out, "shards/00000.parquet", garble)
    problems = _problems(out)
    assert "audio does not decode" in problems
    assert "samples at 16000 Hz, metadata says" in problems


def test_cli_names_shard_and_reason_and_exits_1(out):
    (out / "shards/00000.tar").write_bytes(b"")
    result = CliRunner().invoke(app, ["validate", str(out)], terminal_width=200)
    assert result.exit_code == 1
    assert "shard 0: shards/00000.tar does not match its sha256" in result.output
