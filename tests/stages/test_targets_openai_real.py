"""The openai backend against a real OpenAI-compatible server (llama-cpp-python's, on the embedded Gemma GGUF):
targets from a stage and from a whole build, then a rerun with the server stopped that is answered entirely
from the response cache."""

import json

import pyarrow.parquet as pq
import pytest

from align_data.config import LLMConfig
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from align_data.schemas import Record, SourceRef
from align_data.stages.targets import TargetsStage
from tests.conftest import make_config
from tests.stages import llama_server

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not llama_server.available(), reason="llama-cpp-python[server] is not installed")]

SECRET = "sk-real-server-test-4d2e8b"


def _records():
    seed = '[00:00:00 - 00:00:03]: "The bakery closes at noon." (Gender: Female, Accent: British, Pitch: high, Duration: 3s)'
    return [Record(id="c0", shard_id=0, source=SourceRef("t", "d", 0), text="The old lighthouse keeper climbed "
                   "the stairs one last time.", task="continuation"),
            Record(id="c1", shard_id=0, source=SourceRef("t", "d", 1), text="Our neighbours planted a row of "
                   "apple trees along the road.", task="continuation"),
            Record(id="d0", shard_id=0, source=SourceRef("t", "d", 2), text="The bakery closes at noon.",
                   task="description", description=seed)]


def test_real_server_stage_and_build_then_a_rerun_from_cache_alone(tmp_path, corpus_file, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    cache = tmp_path / "stage_cache.sqlite"
    out = tmp_path / "out"
    llm = {"backend": "openai", "model": llama_server.ALIAS, "max_new_tokens": 24, "concurrency": 4,
           "max_retries": 0, "max_consecutive_failures": 2}
    config = make_config(corpus_file, llm=llm,
                         interleave={"task_weights": {"continuation": 0.3, "description": 0.3, "mtbi": 0.4}})
    with llama_server.llama_cpp_server() as url:
        llm_config = LLMConfig(**llm, base_url=url)
        first = TargetsStage(llm_config, seed=0, cache_path=cache)
        targets = [r.targets for r in first(_records())]
        usage = first.take_usage()
        config.llm.base_url = url
        manifest = build(config, out, runner="local").manifest
        parquet = {p.name: p.read_bytes() for p in (out / "shards").glob("*.parquet")}

    for (target,) in targets:
        assert target.model == llama_server.ALIAS and target.backend == "openai"
        assert target.response and "\n" not in target.response and target.finish_reason in ("stop", "length")
    assert usage["calls"] == 3 and usage["cache_hits"] == 0 and usage["tokens_in"] > 300
    assert 0 < usage["tokens_out"] <= 3 * 24
    assert manifest["rows"] > 0 and validate_build(out) == []
    assert manifest["stages"]["targets"]["errors"] == {}  # no transport failures; an empty answer is filtered
    stages = manifest["stages"]
    judged = sum(stages["targets"]["filtered"].values()) + sum(stages["target_checks"]["filtered"].values())
    assert set(stages["targets"]["filtered"]) <= {"target_empty"}
    asked = stages["targets"]["usage"]["calls"] - stages["targets"]["usage"].get("repair_calls", 0)
    assert asked == manifest["rows"] + judged  # every asked row is kept or filtered; repairs asked again
    rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert {r["task"] for r in rows} == {"continuation", "description", "mtbi"}
    assert all(r["targets"][0]["response"] and r["targets"][0]["prompt_id"] for r in rows)
    assert [p for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()] == []

    # the server is gone: any request would fail (no retries) and two in a row would stop the stage
    again = TargetsStage(llm_config, seed=0, cache_path=cache)
    assert [r.targets for r in again(_records())] == targets
    assert again.take_usage()["cache_hits"] == 3
    rerun = build(config, out, runner="local", overwrite=True).manifest
    counts = rerun["stages"]["targets"]["usage"]
    assert counts["calls"] == 0 and counts["cache_hits"] == manifest["stages"]["targets"]["usage"]["calls"]
    assert rerun["rows"] == manifest["rows"]
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.parquet")} == parquet
    assert json.loads((out / "config.json").read_text())["config"]["llm"]["api_key_env"] == "OPENAI_API_KEY"
