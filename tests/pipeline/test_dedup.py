"""Dedup across shards: the first copy in plan order is kept, every later one is filtered once, whatever runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from align_data.cli import app
from align_data.pipeline import dedup
from align_data.pipeline.build import build
from align_data.pipeline.plan import plan_shards
from align_data.pipeline.validate import validate_build
from tests.conftest import make_config

REPEATED = "The lighthouse keeper climbed the stairs every night to light the lamp."
OTHERS = [f"Paragraph {n} tells of a different town and the people in it." for n in range(5)]


def _keys(*hexes: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(-1, dedup.KEY_BYTES)


def test_later_copies_are_the_drops():
    a, b, c, z = "aa" * 12, "bb" * 12, "cc" * 12, "00" * 11 + "01"
    drops = dedup.cross_shard_drops([_keys(a, z), _keys(b), _keys(c, a, b), _keys(), _keys(z, a)])
    assert drops == [(), (), (a, b), (), (z, a)]
    assert dedup.cross_shard_drops([_keys(), _keys()]) == [(), ()]


@pytest.fixture
def repeated_corpus(tmp_path: Path) -> Path:
    # documents 0, 3 and 5 are the same text (shards 0, 1, 2 with two documents a shard); 3 also has it twice
    docs = [REPEATED, OTHERS[0], OTHERS[1], f"{REPEATED} {REPEATED.upper()}", OTHERS[2], REPEATED.lower()]
    path = tmp_path / "repeated.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


def _outcomes(out: Path) -> dict[str, str]:
    """Record id -> what the source stage filtered it for (later stages' reasons left out)."""
    found = {}
    for kind in ("filtered", "errors"):
        for p in sorted((out / kind).glob("*.jsonl")):
            for line in p.read_text().splitlines():
                entry = json.loads(line)
                if entry["stage"] == "source":
                    found[entry["id"]] = entry["kind"]
    return found


def test_cross_shard_duplicates_are_dropped_once(tmp_path, repeated_corpus):
    cfg = make_config(repeated_corpus, segment={"min_words": 4, "max_words": 12},
                      interleave={"task_weights": {"interleaved": 1.0}})
    summary = build(cfg, tmp_path / "out")
    m = summary.manifest
    assert m["stages"]["source"]["filtered"] == {"cross_shard_duplicate": 2, "duplicate": 1}
    outcomes = _outcomes(tmp_path / "out")
    assert outcomes == {"tiny-000000003-000": "cross_shard_duplicate", "tiny-000000003-001": "duplicate",
                        "tiny-000000005-000": "cross_shard_duplicate"}
    assert m["rows"] + m["errors"] + m["filtered"] == m["candidates"]
    assert validate_build(tmp_path / "out") == []
    plan = json.loads((tmp_path / "out/plan.json").read_text())["shards"]
    assert [len(s["drop"]) for s in plan] == [0, 1, 1]
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "out")])
    assert result.exit_code == 0 and "1 / 2" in result.output, result.output


def test_the_plan_with_drops_is_the_same_on_every_run_and_without_dedup_none(repeated_corpus):
    cfg = make_config(repeated_corpus, segment={"min_words": 4, "max_words": 12})
    specs = plan_shards(cfg)
    first = dedup.with_cross_shard_drops(cfg, specs, "local")
    assert first == dedup.with_cross_shard_drops(cfg, specs, "local") and first[1].drop
    off = make_config(repeated_corpus, segment={"min_words": 4, "max_words": 12, "dedup": False})
    assert all(not s.drop for s in dedup.with_cross_shard_drops(off, plan_shards(off), "local"))


@pytest.mark.ray
def test_the_hashing_pass_in_ray_tasks_finds_the_same_drops(repeated_corpus, monkeypatch):
    import ray

    cfg = make_config(repeated_corpus, segment={"min_words": 4, "max_words": 12}, runner={"kind": "ray"})
    specs = plan_shards(cfg)
    monkeypatch.setattr(dedup, "IN_PROCESS_SHARDS", 0)
    monkeypatch.setattr(dedup, "TASK_SHARDS", 2)
    try:
        in_ray = dedup.with_cross_shard_drops(cfg, specs, "ray")
    finally:
        ray.shutdown()
    assert in_ray == dedup.with_cross_shard_drops(cfg, specs, "local")
