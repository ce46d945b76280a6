"""SIGKILL a build at named points (ALIGN_DATA_CRASH_AT), resume it, and get exactly the uninterrupted corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from align_data.config import load_build_config
from align_data.pipeline.build import build
from align_data.faults import CRASH_AT, CRASH_MARKER
from align_data.pipeline.validate import validate_build
from tests.conftest import ESPEAK_TOML, TINY_CORPUS, without_run_facts

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
seed = 0

[[sources]]
name = "tiny"
path = "{corpus}"
format = "txt"

[segment]
min_words = 4
max_words = 14

[interleave]
task_weights = {tasks}

[llm]
max_new_tokens = {max_new_tokens}
batch_size = 4

[quality]
{quality}

[shards]
docs_per_shard = 1

[runner]
kind = "{runner}"
num_workers = 2
""" + ESPEAK_TOML

INTERLEAVED = "{ interleaved = 1.0 }"
WITH_LLM = "{ interleaved = 1.0, continuation = 1.0 }"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """One corpus file for every build here: its path is part of the config hash, so of the bytes."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TINY_CORPUS)
    return path


NO_FILTERS = "target_filters = []  # answers are cut at 6 tokens here; over_length would filter them all"
# answers cut at 10 tokens fail over_length unless they end first: some are repaired (sampled at 0.7), some not
REPAIRING = 'target_filters = ["over_length"]\nmax_repairs = 2'


def _config(root: Path, corpus: Path, runner: str = "local", tasks: str = INTERLEAVED,
            quality: str = NO_FILTERS, max_new_tokens: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"build-{runner}.toml"
    path.write_text(CONFIG.format(runner=runner, tasks=tasks, corpus=corpus, quality=quality,
                                  max_new_tokens=max_new_tokens))
    return path


def _crashing_build(config: Path, out: Path, point: str, marker: Path | None = None,
                    resume: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{CRASH_AT: point}, RAY_AUTH_MODE="disabled")
    if marker is not None:
        env[CRASH_MARKER] = str(marker)
    cmd = [sys.executable, "-m", "align_data.cli", "build", str(config), "--out", str(out)]
    return subprocess.run(cmd + (["--resume"] if resume else []), env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600, start_new_session=True)


def assert_same_corpus(a: Path, b: Path) -> None:
    """Every data file byte-identical; sidecars and manifest identical but for timings and LLM usage counts."""
    files_a = sorted(str(p.relative_to(a)) for d in ("shards", "errors", "filtered") for p in (a / d).rglob("*"))
    files_b = sorted(str(p.relative_to(b)) for d in ("shards", "errors", "filtered") for p in (b / d).rglob("*"))
    assert files_a == files_b
    for rel in files_a:
        if rel.endswith(".json"):
            assert without_run_facts(json.loads((a / rel).read_text())) == without_run_facts(json.loads((b / rel).read_text())), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert without_run_facts(json.loads((a / "manifest.json").read_text())) == \
        without_run_facts(json.loads((b / "manifest.json").read_text()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> Path:
    root = tmp_path_factory.mktemp("reference")
    build(load_build_config(_config(root, corpus)), root / "out")
    return root / "out"


# (point[:n], what the kill interrupts). Atomic writes in order: config.json 1, plan.json 2, then per shard
# parquet, tar, errors, filtered, sidecar (shard 0 = writes 3-7, shard 1 = 8-12, ...).
LOCAL_POINTS = [
    ("stage:tts:2", "during TTS of shard 1 (shard 0 complete)"),
    ("write:between_files:2", "mid-shard: shard 1's Parquet written, its tar not"),
    ("write:before_rename:4", "inside a write: shard 0's tar is a temp file, not yet renamed"),
    ("write:after_rename:8", "right after a rename: shard 1's Parquet in place, nothing else"),
    ("manifest", "while writing the manifest (every shard complete)"),
]


@pytest.mark.parametrize("point,where", LOCAL_POINTS, ids=[p for p, _ in LOCAL_POINTS])
def test_kill_then_resume_gives_the_uninterrupted_corpus(tmp_path, corpus, reference, point, where):
    config = _config(tmp_path, corpus)
    out = tmp_path / "out"
    killed = _crashing_build(config, out, point)
    assert killed.returncode == -9, (where, killed.stderr[-2000:])
    assert validate_build(out) != []  # an interrupted build never looks complete
    with pytest.raises(Exception, match="not empty"):
        build(load_build_config(config), out)  # no silent mixing: a rerun must say --resume
    summary = build(load_build_config(config), out, resume=True)
    assert not summary.failed and summary.written + summary.skipped == 3
    assert not list(out.rglob(".*.tmp-*")), "temporary files of the killed run were left behind"
    assert validate_build(out) == []
    assert_same_corpus(reference, out)


def test_resume_with_a_changed_config_is_refused_unless_overwrite(tmp_path, corpus):
    config = _config(tmp_path, corpus)
    out = tmp_path / "out"
    assert _crashing_build(config, out, "stage:tts:2").returncode == -9
    changed = load_build_config(config, ["segment.max_words=20"])
    with pytest.raises(Exception, match="config changed"):
        build(changed, out, resume=True)
    summary = build(changed, out, overwrite=True)
    assert summary.written == 3 and validate_build(out) == []


@pytest.mark.slow
def test_kill_during_llm_calls_then_resume(tmp_path, corpus):
    config = _config(tmp_path / "crash", corpus, tasks=WITH_LLM)
    out = tmp_path / "crash" / "out"
    killed = _crashing_build(config, out, "stage:targets:2")
    assert killed.returncode == -9, killed.stderr[-2000:]
    summary = build(load_build_config(config), out, resume=True)
    assert summary.skipped == 1 and summary.written == 2
    reference = tmp_path / "ref" / "out"
    build(load_build_config(_config(tmp_path / "ref", corpus, tasks=WITH_LLM)), reference)
    assert json.loads((reference / "manifest.json").read_text())["tasks"].get("continuation", 0) > 0
    assert validate_build(out) == []
    assert_same_corpus(reference, out)


@pytest.mark.slow
def test_kill_during_a_repair_then_resume_gives_the_same_bytes(tmp_path, corpus):
    """Two builds with repairs write the same bytes, and one killed right after a repair batch resumes to them."""
    reference = tmp_path / "ref" / "out"
    build(load_build_config(_config(tmp_path / "ref", corpus, tasks=WITH_LLM, quality=REPAIRING,
                                    max_new_tokens=10)), reference)
    usage = json.loads((reference / "manifest.json").read_text())["stages"]["targets"]["usage"]
    assert usage.get("repair_calls", 0) > 0 and usage.get("repairs:over_length", 0) > 0, usage
    config = _config(tmp_path / "crash", corpus, tasks=WITH_LLM, quality=REPAIRING, max_new_tokens=10)
    out = tmp_path / "crash" / "out"
    killed = _crashing_build(config, out, "targets:repair")
    assert killed.returncode == -9, killed.stderr[-2000:]
    summary = build(load_build_config(config), out, resume=True)
    assert not summary.failed
    assert validate_build(out) == []
    assert_same_corpus(reference, out)
    repaired = [row for p in sorted((out / "shards").glob("*.parquet"))
                for row in pq.read_table(p, columns=["provenance"]).to_pylist() if row["provenance"]["llm_attempt"]]
    assert all(row["provenance"]["repaired"][0] == "over_length" for row in repaired)


@pytest.mark.ray
def test_ray_worker_killed_mid_shard_is_retried(tmp_path, corpus, reference):
    config = _config(tmp_path, corpus, runner="ray")
    out = tmp_path / "out"
    marker = tmp_path / "worker-killed"
    result = _crashing_build(config, out, "stage:tts", marker=marker)  # one actor dies in its first shard
    assert marker.exists(), "no worker reached the crash point"
    assert result.returncode == 0, result.stderr[-3000:]
    assert validate_build(out) == []
    assert_same_corpus(reference, out)


@pytest.mark.ray
def test_ray_driver_killed_then_resumed(tmp_path, corpus, reference):
    config = _config(tmp_path, corpus, runner="ray")
    out = tmp_path / "out"
    killed = _crashing_build(config, out, "driver:shard_done")  # the driver dies after its first shard
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _crashing_build(config, out, "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert validate_build(out) == []
    assert_same_corpus(reference, out)


@pytest.mark.slow
def test_batched_shards_killed_between_two_writes_resume_to_the_same_bytes(tmp_path, corpus):
    """llm.batch_shards = 2 with repairs: shards 0 and 1 share their LLM calls. Killed after shard 0 is written and
    before shard 1's files are, the resumed build redoes the batch whole (the LLM sees the same batches) and gives
    the uninterrupted bytes, without writing shard 0 again."""
    def batched(root: Path) -> Path:
        path = _config(root, corpus, tasks=WITH_LLM, quality=REPAIRING, max_new_tokens=10)
        path.write_text(path.read_text().replace("batch_size = 4", "batch_size = 4\nbatch_shards = 2"))
        return path

    reference = tmp_path / "ref" / "out"
    build(load_build_config(batched(tmp_path / "ref")), reference)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["stages"]["targets"]["usage"].get("repair_calls", 0) > 0
    calls = [json.loads((reference / "shards" / f"{i:05d}.json").read_text())["stages"]["targets"]["usage"]
             .get("calls", 0) for i in range(3)]
    assert sum(calls) == manifest["stages"]["targets"]["usage"]["calls"] and calls[0] and calls[1]
    config = batched(tmp_path / "crash")
    out = tmp_path / "crash" / "out"
    killed = _crashing_build(config, out, "write:after_rename:8")  # shard 0 complete, shard 1's Parquet only
    assert killed.returncode == -9, killed.stderr[-2000:]
    written = (out / "shards" / "00000.json").stat().st_mtime_ns
    summary = build(load_build_config(config), out, resume=True)
    assert (summary.skipped, summary.written) == (1, 2) and not summary.failed
    assert (out / "shards" / "00000.json").stat().st_mtime_ns == written
    assert validate_build(out) == []
    assert_same_corpus(reference, out)
