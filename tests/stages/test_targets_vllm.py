"""vLLM for real (its CPU build, in the venv `make test-vllm` makes): `align-data build` with the vllm backend on the
prepared Gemma folder, validated, with a rerun answered from the response cache alone; and `vllm serve` started
here behind the openai backend. Skipped where vllm is not installed (the main venv)."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ESPEAK_TOML
from tests.stages.vllm_server import SERVED, available, vllm_server

pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(not available(), reason="vllm is not installed (make test-vllm)")]

HELDOUT_TASKS = ["sentiment", "translate"]
# a small KV cache and no compile step: the engine starts in well under a minute on 2 cores
ENGINE = {"kv_cache_gb": 1, "enforce_eager": True, "max_model_len": 1024}
BIN = Path(sys.executable).parent


def _config(tmp: Path, corpus: Path, llm: dict) -> Path:
    lines = ["seed = 0", "[[sources]]", 'name = "tiny"', f'path = "{corpus}"', 'format = "txt"',
             "[segment]", "min_words = 4", "max_words = 14", "[shards]", "docs_per_shard = 2",
             "[interleave]", "task_weights = { continuation = 0.3, description = 0.3, mtbi = 0.4 }",
             "[runner]", 'kind = "local"', "[llm]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in llm.items()]
    lines += ["[llm.mtbi]", f"heldout_tasks = {json.dumps(HELDOUT_TASKS)}"]
    path = tmp / "build.toml"
    path.write_text("\n".join(lines) + "\n" + ESPEAK_TOML)  # the vLLM venv has no kokoro/hibari
    return path


def _align_data(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    proc = subprocess.run([str(BIN / "align-data"), *args], capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _rows(out: Path) -> list[dict]:
    return [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def _check_build(out: Path, backend: str) -> dict:
    """Valid shards whose LLM rows carry non-empty targets from ``backend``; MTBI held-out tasks split off."""
    _align_data("validate", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    rows = _rows(out)
    assert manifest["rows"] == len(rows) > 0
    assert {r["task"] for r in rows} == {"continuation", "description", "mtbi"}
    for r in rows:
        (target,) = r["targets"]
        assert target["response"].strip() and target["backend"] == backend and target["model"] == SERVED
        if r["task"] == "mtbi":
            assert r["split"] == ("heldout_task" if target["task"] in HELDOUT_TASKS else "train")
    usage = manifest["stages"]["targets"]["usage"]
    assert usage["calls"] > 0 and usage["cache_hits"] == 0 and usage["tokens_out"] > 0
    assert manifest["stages"]["targets"]["errors"] == {}
    return manifest


def _rerun_from_cache(config: Path, out: Path, first: dict) -> None:
    parquet = {p.name: p.read_bytes() for p in (out / "shards").glob("*.parquet")}
    _align_data("build", str(config), "--out", str(out), "--overwrite")
    again = json.loads((out / "manifest.json").read_text())
    usage = again["stages"]["targets"]["usage"]
    assert usage["calls"] == 0 and usage["cache_hits"] == first["stages"]["targets"]["usage"]["calls"]
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.parquet")} == parquet


def test_build_with_the_vllm_engine_then_a_rerun_from_the_cache(tmp_path, corpus_file):
    config = _config(tmp_path, corpus_file, {"backend": "vllm", "max_new_tokens": 24, **ENGINE})
    out = tmp_path / "out"
    _align_data("build", str(config), "--out", str(out))
    first = _check_build(out, "vllm")
    _rerun_from_cache(config, out, first)


def test_build_against_vllm_serve_with_the_openai_backend(tmp_path, corpus_file):
    from align_data.models.gemma import prepare_gemma

    out = tmp_path / "out"
    with vllm_server(prepare_gemma()) as url:
        config = _config(tmp_path, corpus_file, {"backend": "openai", "model": SERVED, "base_url": url,
                                                 "max_new_tokens": 24, "concurrency": 4, "max_retries": 1})
        _align_data("build", str(config), "--out", str(out))
    first = _check_build(out, "openai")
    # the server is gone: the rerun is answered by the cache alone
    _rerun_from_cache(config, out, first)
    tasks = Counter(r["task"] for r in _rows(out))
    assert tasks["mtbi"] > 0
