"""A whole local build with the openai backend (BLSP and MTBI rows): LLM counts reach sidecars and manifest, MTBI
rows name task and phrasing with held-out tasks split off, the API key reaches no output file, and a rerun is
answered from the response cache (zero requests, same bytes)."""

import json
from collections import Counter

import pyarrow.parquet as pq

from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from tests.conftest import make_config
from tests.fakes.openai_server import FakeOpenAIServer

SECRET = "sk-build-test-93b1f0c2aa"
HELDOUT_TASKS = ["continue", "paraphrase", "sentiment", "question", "answer", "translate"]


def test_openai_build_counts_calls_keeps_the_key_out_and_reruns_from_cache(tmp_path, corpus_file, monkeypatch):
    monkeypatch.setenv("ALIGN_TEST_LLM_KEY", SECRET)
    out = tmp_path / "out"
    # one row's server leaks the Authorization header into its error body (faults: echo-auth, then a 500)
    with FakeOpenAIServer(by_prompt={"Fishermen pulled": ["echo-auth"] * 10}) as server:
        config = make_config(corpus_file, interleave={"task_weights": {"continuation": 0.2, "mtbi": 0.8}},
                             llm={"backend": "openai", "model": "fake-model", "base_url": server.url,
                                  "api_key_env": "ALIGN_TEST_LLM_KEY", "max_retries": 1, "retry_backoff_s": 0.01,
                                  "mtbi": {"heldout_tasks": HELDOUT_TASKS}})
        first = build(config, out, runner="local").manifest
        sent = len(server.requests)
        parquet = {p.name: p.read_bytes() for p in (out / "shards").glob("*.parquet")}
        assert {r["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}

        usage = first["stages"]["targets"]["usage"]
        assert first["errors"] == 1 and first["stages"]["targets"]["errors"] == {"llm_http_500": 1}
        assert usage == {"cache_hits": 0, "calls": first["rows"] + 1, "failures": 1, "retries": 1,
                         "tokens_in": usage["tokens_in"], "tokens_out": 2 * first["rows"]}
        assert usage["tokens_in"] > 100 * first["rows"]  # the few-shot prompts
        sidecars = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*.json"))]
        assert sum(sc["stages"]["targets"]["usage"]["calls"] for sc in sidecars) == usage["calls"]
        assert (out / "cache" / "llm_responses.sqlite").exists()
        [error] = [json.loads(line) for p in (out / "errors").glob("*.jsonl") for line in p.read_text().splitlines()]
        assert error["kind"] == "llm_http_500" and "[redacted]" in error["message"]

        rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
        mtbi = [r for r in rows if r["task"] == "mtbi"]
        assert mtbi and first["tasks"] == dict(sorted(Counter(r["task"] for r in rows).items()))
        for r in mtbi:  # every MTBI row names its task and phrasing; held-out tasks moved out of train
            (target,) = r["targets"]
            assert target["prompt_id"].startswith(target["task"] + "-")
            assert r["split"] == ("heldout_task" if target["task"] in HELDOUT_TASKS else "train")
        assert {r["split"] for r in mtbi} == {"train", "heldout_task"}
        assert first["splits"] == dict(sorted(Counter(r["split"] for r in rows).items()))

        leaks = [p for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert leaks == []
        assert validate_build(out) == []

        again = build(config, out, runner="local", overwrite=True).manifest
        assert len(server.requests) == sent + 2  # only the failed row is asked again (2 tries)
    usage = again["stages"]["targets"]["usage"]
    assert usage["cache_hits"] == again["rows"] == first["rows"] and usage["calls"] == 1
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.parquet")} == parquet
