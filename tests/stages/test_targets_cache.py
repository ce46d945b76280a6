"""The LLM response cache: keys, several processes on one file, and a rerun that asks the LLM nothing."""

import sqlite3
import subprocess
import sys
import textwrap
import threading

from align_data.config import LLMConfig
from align_data.schemas import Record, SourceRef
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.cache import ResponseCache, cache_key
from align_data.stages.targets.client import CachedClient, Completion, Prompt, Sampling
from tests.fakes.openai_server import FakeOpenAIServer

GREEDY = Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0)
SAMPLED = Sampling(max_new_tokens=8, temperature=0.8, top_p=0.9)


def test_key_covers_model_backend_prompt_params_and_the_record_seed():
    base = cache_key("m", "openai", "p", SAMPLED, 1)
    variants = [cache_key("m2", "openai", "p", SAMPLED, 1), cache_key("m", "transformers", "p", SAMPLED, 1),
                cache_key("m", "openai", "p2", SAMPLED, 1), cache_key("m", "openai", "p", SAMPLED, 2),
                cache_key("m", "openai", "p", Sampling(9, 0.8, 0.9), 1),
                cache_key("m", "openai", "p", Sampling(8, 0.8, 0.9, stop=()), 1)]
    assert len({base, *variants}) == 7
    assert cache_key("m", "openai", "p", GREEDY, 1) != cache_key("m", "openai", "p", GREEDY, 2)
    assert cache_key("m", "openai", "p", GREEDY, 1) == cache_key("m", "openai", "p", Sampling(8, 0.0, 1.0), 1)


def test_put_and_get_round_trip(tmp_path):
    cache = ResponseCache(tmp_path / "sub" / "c.sqlite")
    items = {f"k{i}": Completion(f"text {i} ✓", "stop", i, 2 * i) for i in range(1200)}
    cache.put_many(items)
    assert cache.get_many([*items, "absent"]) == items and len(cache) == 1200
    assert ResponseCache(tmp_path / "sub" / "c.sqlite").get_many(["k7"]) == {"k7": items["k7"]}  # persisted


WRITER = textwrap.dedent("""
    import sys
    from align_data.stages.targets.cache import ResponseCache
    from align_data.stages.targets.client import Completion
    cache = ResponseCache(sys.argv[1])
    for batch in range(20):
        cache.put_many({f"{sys.argv[2]}-{batch}-{i}": Completion("x" * 200, "stop", 1, 1) for i in range(10)})
        assert len(cache.get_many([f"{sys.argv[2]}-{batch}-0"])) == 1
""")


def test_several_processes_write_one_cache_file_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    ResponseCache(path)  # created (WAL mode is a property of the file)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}"], stderr=subprocess.PIPE)
             for n in range(3)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    assert len(ResponseCache(path)) == 3 * 20 * 10


def test_workers_that_create_the_cache_file_at_the_same_moment_all_open_it(tmp_path):
    """Before the file is in WAL mode sqlite refuses some of several new connections at once (a fresh build's
    first LLM shards on two Ray workers failed 'database is locked'); with 6 threads this hit ~5 % of 200 files."""
    failures = []

    def open_and_write(path, barrier, n):
        barrier.wait()
        try:
            ResponseCache(path).put_many({f"k{n}": Completion("t", "stop", 1, 1)})
        except sqlite3.OperationalError as exc:
            failures.append(f"{path.name}: {exc}")

    for round_ in range(200):
        path, barrier = tmp_path / f"{round_}.sqlite", threading.Barrier(6)
        threads = [threading.Thread(target=open_and_write, args=(path, barrier, n)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(ResponseCache(tmp_path / "199.sqlite")) == 6
    assert sqlite3.connect(tmp_path / "0.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _records(n):
    return [Record(id=f"r{i}", shard_id=0, source=SourceRef("t", "d", i), text=f"Sentence {i} of the test.",
                   task="continuation") for i in range(n)]


def test_a_rerun_is_answered_from_the_cache_without_a_single_request(tmp_path):
    cache = tmp_path / "llm.sqlite"
    with FakeOpenAIServer() as server:
        config = LLMConfig(backend="openai", model="fake", base_url=server.url, batch_size=4)
        first = TargetsStage(config, seed=0, cache_path=cache)
        out1 = first(_records(10))
        assert len(server.requests) == 10
        assert first.take_usage() == {"cache_hits": 0, "calls": 10, "failures": 0, "retries": 0,
                                      "tokens_in": sum(len(r["payload"]["prompt"].split()) for r in server.requests),
                                      "tokens_out": 20}
        again = TargetsStage(config, seed=0, cache_path=cache)  # a new worker: new client, same file
        out2 = again(_records(10))
        assert len(server.requests) == 10  # zero new requests
    assert again.take_usage() == {"cache_hits": 10, "calls": 0, "failures": 0, "retries": 0, "tokens_in": 0,
                                  "tokens_out": 0}
    assert [r.targets for r in out2] == [r.targets for r in out1]


def test_failed_answers_are_not_cached(tmp_path):
    cache = tmp_path / "llm.sqlite"
    with FakeOpenAIServer(by_prompt={"Sentence 1 ": ["400"]}) as server:
        config = LLMConfig(backend="openai", model="fake", base_url=server.url)
        assert TargetsStage(config, seed=0, cache_path=cache)(_records(3))[1].error.kind == "llm_http_400"
        stage = TargetsStage(config, seed=0, cache_path=cache)
        assert all(r.live for r in stage(_records(3)))
    assert stage.take_usage()["cache_hits"] == 2 and stage.take_usage()["calls"] == 1


def test_the_cache_sits_in_front_of_any_backend():
    class Counting:
        model_name, backend = "m", "transformers"
        prompts = []

        def complete(self, prompts, sampling, seeds):
            self.prompts += [p.text for p in prompts]
            return [Completion(p.text.upper(), "stop", 1, 1) for p in prompts]

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        client = CachedClient(inner := Counting(), ResponseCache(f"{tmp}/c.sqlite"))
        assert [c.text for c in client.complete([Prompt("a"), Prompt("b")], GREEDY, [0, 1])] == ["A", "B"]
        assert [c.text for c in client.complete([Prompt(t) for t in "bca"], GREEDY, [1, 2, 0])] == ["B", "C", "A"]
    assert inner.prompts == ["a", "b", "c"]
