"""The openai backend: request/response protocol (pure), then faults injected by the local stub server."""

import time

import pytest

from align_data.config import LLMConfig
from align_data.errors import ServiceUnavailable
from align_data.schemas import Record, SourceRef
from align_data.stages.base import RecordError
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.client import Completion, Prompt, Sampling
from align_data.stages.targets.openai_api import MalformedResponse, build_payload, parse_completion
from align_data.stages.targets.openai_client import OpenAIClient, public_url
from align_data.stages.targets.stage import record_seed
from tests.fakes.openai_server import FakeOpenAIServer, answer_for, free_port, prompt_of

SECRET = "sk-test-5f3c9a1e77d04b2b"
GREEDY = Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0)


def _config(url: str, **kw) -> LLMConfig:
    base = dict(backend="openai", model="fake-model", base_url=url, max_retries=2, retry_backoff_s=0.01,
                timeout_s=2.0, concurrency=4, max_consecutive_failures=4, cache=False)
    return LLMConfig(**(base | kw))


def _client(url: str, **kw) -> OpenAIClient:
    return OpenAIClient(_config(url, **kw))


def _records(n: int, prefix: str = "r") -> list[Record]:
    return [Record(id=f"{prefix}{i}", shard_id=0, source=SourceRef("t", "d", i), text=f"Sentence number {i} here.",
                   task="continuation") for i in range(n)]


# --- protocol (pure) -----------------------------------------------------------------------------------------

def test_payload_is_a_completions_request_with_seed_and_newline_stop():
    p = build_payload("m", Prompt("Text: hi\nContinuation:"), Sampling(32, 0.7, 0.9), seed=1234)
    assert p == {"model": "m", "prompt": "Text: hi\nContinuation:", "max_tokens": 32, "temperature": 0.7,
                 "top_p": 0.9, "seed": 1234, "n": 1, "stream": False, "stop": ["\n"]}


def test_chat_payload_sends_the_turns_and_the_answer_is_the_message_content():
    prompt = Prompt("Text: hi\nAnswer:", (("user", "Say hi."), ("assistant", "Hi."), ("user", "Say bye.")))
    p = build_payload("m", prompt, Sampling(32, 0.0, 1.0, ("\n\n",)), seed=7, chat=True)
    assert "prompt" not in p and p["stop"] == ["\n\n"] and p["seed"] == 7
    assert p["messages"] == [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."},
                             {"role": "user", "content": "Say bye."}]
    body = (b'{"choices": [{"message": {"role": "assistant", "content": "Bye."}, "finish_reason": "stop"}], '
            b'"usage": {"prompt_tokens": 20, "completion_tokens": 2}}')
    assert parse_completion(body, chat=True) == Completion("Bye.", "stop", 20, 2)
    with pytest.raises(MalformedResponse, match="message.content"):
        parse_completion(b'{"choices": [{"text": "Bye.", "finish_reason": "stop"}]}', chat=True)


def test_parse_completion_reads_text_reason_and_usage():
    body = (b'{"choices": [{"text": " It purred.", "finish_reason": "length"}], '
            b'"usage": {"prompt_tokens": 12, "completion_tokens": 4}}')
    assert parse_completion(body) == Completion(" It purred.", "length", 12, 4)
    assert parse_completion(b'{"choices": [{"text": "x", "finish_reason": null}]}') == Completion("x", "unknown", 0, 0)


@pytest.mark.parametrize("body", [b"", b"not json", b'{"choices": [{"text": "cut', b"[1, 2]", b'{"choices": []}',
                                  b'{"choices": [{"finish_reason": "stop"}]}', b'{"object": "error"}',
                                  b"\xff\xfe"])
def test_parse_completion_rejects_what_is_not_a_completion(body):
    with pytest.raises(MalformedResponse):
        parse_completion(body)


def test_public_url_drops_credentials_and_query():
    assert public_url("https://user:pw@api.example.com:8443/v1/completions?api-key=k") == \
        "https://api.example.com:8443/v1/completions"


# --- against the stub ----------------------------------------------------------------------------------------

def test_answers_in_prompt_order_with_per_request_seed_and_key_header(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    prompts = [f"prompt {i}" for i in range(10)]
    with FakeOpenAIServer() as server:
        out = _client(server.url).complete([Prompt(p) for p in prompts], GREEDY, list(range(100, 110)))
    assert [c.text for c in out] == [answer_for(p) for p in prompts]
    assert {r["payload"]["prompt"]: r["payload"]["seed"] for r in server.requests} == \
        {p: 100 + i for i, p in enumerate(prompts)}
    assert {r["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert out[0].tokens_in == 2 and out[0].tokens_out == 2


def test_no_key_in_the_environment_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    with FakeOpenAIServer() as server:
        _client(server.url, api_key_env="MY_LLM_KEY").complete([Prompt("p")], GREEDY, [0])
    assert server.requests[0]["authorization"] == ""


def test_requests_overlap_up_to_the_concurrency_bound():
    with FakeOpenAIServer(delay_s=0.2) as server:
        t0 = time.perf_counter()
        out = _client(server.url, concurrency=4).complete([Prompt(f"p{i}") for i in range(12)], GREEDY, [0] * 12)
        elapsed = time.perf_counter() - t0
    assert all(isinstance(c, Completion) for c in out)
    assert server.max_in_flight == 4
    assert elapsed < 12 * 0.2 / 2  # one at a time would take 2.4 s; 4 in flight ~0.6 s


@pytest.mark.parametrize("fault", ["429", "500", "503", "malformed", "no-choices", "truncated", "disconnect", "hang"])
def test_a_transient_fault_is_retried_then_succeeds(fault):
    with FakeOpenAIServer(script=[fault], hang_s=2.0) as server:
        client = _client(server.url, timeout_s=0.3 if fault == "hang" else 5.0)
        [answer] = client.complete([Prompt("p")], GREEDY, [0])
    assert answer == Completion(answer_for("p"), "stop", 1, 2)
    assert [r["fault"] for r in server.requests] == [fault, "ok"] and client.retries == 1


@pytest.mark.parametrize("fault, kind", [("500", "llm_http_500"), ("429", "llm_http_429"), ("hang", "llm_timeout"),
                                         ("malformed", "llm_bad_response"), ("truncated", "llm_connection"),
                                         ("disconnect", "llm_connection")])
def test_a_fault_that_persists_becomes_that_rows_error_after_the_retries(fault, kind):
    with FakeOpenAIServer(by_prompt={"bad": [fault] * 10}, hang_s=3.0) as server:
        client = _client(server.url, timeout_s=0.5 if fault == "hang" else 5.0, max_retries=2)
        out = client.complete([Prompt(t) for t in ("good 1", "bad", "good 2")], GREEDY, [0] * 3)
    assert isinstance(out[0], Completion) and isinstance(out[2], Completion)
    assert isinstance(out[1], RecordError) and out[1].kind == kind
    assert "3 tries" in str(out[1]) and server.url in str(out[1])
    assert sum(r["payload"]["prompt"] == "bad" for r in server.requests) == 3


def test_a_client_error_is_not_retried():
    with FakeOpenAIServer(script=["400"]) as server:
        [answer] = _client(server.url).complete([Prompt("p")], GREEDY, [0])
    assert isinstance(answer, RecordError) and answer.kind == "llm_http_400" and len(server.requests) == 1


def test_backoff_grows_and_honours_retry_after():
    client = _client("http://127.0.0.1:9/v1", retry_backoff_s=1.0, retry_backoff_max_s=3.0)
    assert all(0 <= client._delay(1, None) <= 1.0 for _ in range(50))
    assert max(client._delay(4, None) for _ in range(200)) <= 3.0  # 8 s capped at 3
    assert client._delay(1, 2.5) >= 2.5 and client._delay(1, 60.0) == 3.0


def test_server_down_stops_the_stage_with_one_message_naming_the_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    url = f"http://127.0.0.1:{free_port()}/v1"
    stage = TargetsStage(_config(url, max_consecutive_failures=3, max_retries=1), seed=0)
    t0 = time.perf_counter()
    with pytest.raises(ServiceUnavailable) as info:
        stage(_records(10))
    message = str(info.value)
    assert f"LLM server {url}/completions is unavailable" in message and "3 requests in a row" in message
    assert "llm_connection" in message and SECRET not in message
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ServiceUnavailable):  # and it stays down for the next shard, without waiting
        stage(_records(2, "s"))


def test_an_unknown_model_or_a_wrong_key_stops_the_stage_too():
    with FakeOpenAIServer(default="401") as server:
        with pytest.raises(ServiceUnavailable, match="llm_http_401"):
            TargetsStage(_config(server.url, max_consecutive_failures=2), seed=0)(_records(4))
    assert len(server.requests) <= 4  # not retried: a refusal is permanent


def test_row_failures_from_a_live_server_do_not_stop_the_stage():
    with FakeOpenAIServer(by_prompt={"number 1 ": ["500"] * 10, "number 3 ": ["400"]}) as server:
        out = TargetsStage(_config(server.url, max_consecutive_failures=1), seed=0)(_records(5))
    assert [r.error.kind if r.error else "ok" for r in out] == ["ok", "llm_http_500", "ok", "llm_http_400", "ok"]
    assert {r["payload"]["seed"] for r in server.requests} == {record_seed(0, r) for r in _records(5)}


def test_a_server_echoing_the_key_never_puts_it_in_an_error_record(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAIServer(default="echo-auth") as server:
        [rec] = TargetsStage(_config(server.url, max_retries=0), seed=0)(_records(1))
    assert rec.error.kind == "llm_http_500" and "[redacted]" in rec.error.message
    assert SECRET not in rec.error.message


# --- config --------------------------------------------------------------------------------------------------

def test_openai_needs_a_served_model_name():
    from align_data.errors import AlignDataError
    from align_data.config import build_config_from_dict

    with pytest.raises(AlignDataError, match="llm.model"):
        build_config_from_dict({"sources": [{"name": "a", "path": "x"}], "llm": {"backend": "openai"}})


def test_how_targets_are_fetched_is_not_part_of_the_config_hash(tmp_path):
    from align_data.config import build_config_from_dict, load_build_config

    base = {"sources": [{"name": "a", "path": "x"}], "llm": {"backend": "openai", "model": "m"}}
    moved = {"sources": base["sources"], "llm": base["llm"] | {"base_url": "http://other:1/v1", "concurrency": 32,
                                                                "timeout_s": 5, "cache": False, "cache_path": "/c"}}
    assert build_config_from_dict(base).hash() == build_config_from_dict(moved).hash()
    changed = {"sources": base["sources"], "llm": base["llm"] | {"temperature": 0.5}}
    assert build_config_from_dict(base).hash() != build_config_from_dict(changed).hash()
    (tmp_path / "c.toml").write_text('[[sources]]\nname = "a"\npath = "x"\n[llm]\ncache_path = "cache/llm.sqlite"\n')
    assert load_build_config(tmp_path / "c.toml").llm.cache_path == str(tmp_path / "cache/llm.sqlite")


def test_chat_endpoint_sends_the_shots_as_turns_and_caches_them(tmp_path):
    records = [Record(id=f"c{i}", shard_id=0, source=SourceRef("t", "d", i), text=f"The cat sat on mat {i}.",
                      task="continuation") for i in range(3)]
    with FakeOpenAIServer() as server:
        config = LLMConfig(backend="openai", model="m", base_url=server.url, endpoint="chat")
        stage = TargetsStage(config, seed=0, cache_path=tmp_path / "cache.sqlite")
        out = stage(records)
        again = TargetsStage(config, seed=0, cache_path=tmp_path / "cache.sqlite")(records)
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"} and len(server.requests) == 3
    payload = server.requests[0]["payload"]
    assert payload["stop"] == ["\n\n"] and "prompt" not in payload
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    answers = {answer_for(prompt_of(r["payload"])).strip() for r in server.requests}
    assert {r.targets[0].response for r in out} == answers and len(answers) == 3
    assert [r.targets for r in again] == [r.targets for r in out]

