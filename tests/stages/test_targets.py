import numpy as np
import pytest

from align_data.config import LLMConfig
from align_data.schemas import Record, SourceRef
from align_data.stages.base import RecordError
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.client import Completion
from align_data.stages.targets.stage import record_seed
from align_data.stages.targets.prompts import build_request, corpus_target, parse_response


def _record(task, rid="r-1", description='[00:00:00 - 00:00:02]: "Hi there" (Gender: Male)'):
    return Record(id=rid, shard_id=0, source=SourceRef("t", "d", 0), text="The cat sat on the mat.",
                  next_text="Then it slept.", task=task, description=description)


def test_continuation_request_ends_with_the_text():
    req = build_request(_record("continuation"), np.random.default_rng(0))
    assert req.instruction.startswith("Continue the following text")
    assert req.llm_prompt.endswith("Text: The cat sat on the mat.\nContinuation:")


def test_description_request_uses_seed_transcript():
    req = build_request(_record("description"), np.random.default_rng(0))
    assert req.prompt_id.startswith("desta-") and "Hi there" in req.llm_prompt
    with pytest.raises(RecordError):
        build_request(_record("description", description=None), np.random.default_rng(0))


def test_parse_cleans_to_the_first_stop_string():
    req = build_request(_record("continuation"), np.random.default_rng(0))
    t = parse_response(" It purred.\nText: junk", "stop", req, "m", "b")
    assert t.response == "It purred." and t.finish_reason == "stop" and t.task == "continuation"
    assert parse_response("  \n", "stop", req, "m", "b").response == ""  # the stage filters it
    chat = parse_response("\n It purred.\nThen it slept.\n\nAnything else?", "stop", req, "m", "b", ("\n\n",))
    assert chat.response == "It purred.\nThen it slept."  # a chat answer ends at its first blank line


def test_every_task_has_a_chat_form_with_the_shots_as_turns():
    from align_data.stages.targets.prompts import catalog

    for task in ("continuation", "description", "mtbi"):
        req = build_request(_record(task), np.random.default_rng(0))
        roles = [role for role, _ in req.chat]
        assert roles[-1] == "user" and roles[:-1] == ["user", "assistant"] * (len(roles) // 2)
        assert "The cat sat on the mat." in req.chat[-1][1] or "Hi there" in req.chat[-1][1]
        assert req.instruction in req.chat[-1][1] and "Answer:" not in req.chat[-1][1]
    cont = build_request(_record("continuation"), np.random.default_rng(0))
    shown = [int(i.split(":")[1]) for i in cont.shots.split(",")]
    pool = catalog()["continuation"]["shots"]
    assert [c for role, c in cont.chat if role == "assistant"] == [pool[i]["response"] for i in shown]
    assert all(pool[i]["response"] in cont.llm_prompt for i in shown) and len(shown) == 2


def test_shots_are_drawn_per_record_from_the_pool():
    """No fixed pair of examples: over many records every shot of each pool is shown, and repairs (another
    shot RNG) draw other examples for the same question."""
    from align_data.stages.targets.prompts import catalog, mtbi_catalog

    for task, pool, draws in (("continuation", catalog()["continuation"]["shots"], 200),
                              ("description", catalog()["description"]["shots"], 3000)):
        seen = set()
        for seed in range(draws):
            seen.update(build_request(_record(task), np.random.default_rng(seed)).shots.split(","))
        assert len(seen) == len(pool), (task, len(seen), len(pool))
    first = build_request(_record("mtbi"), np.random.default_rng(1))
    again = [build_request(_record("mtbi"), np.random.default_rng(1), shot_rng=np.random.default_rng(k))
             for k in range(5)]
    assert {r.prompt_id for r in again} == {first.prompt_id} and {r.task for r in again} == {first.task}
    assert len({r.shots for r in again}) > 1 and len(mtbi_catalog()[first.task]["shots"]) >= 5


def test_description_shots_that_agree_with_the_clip_are_preferred():
    """A base model copies its examples' attributes: a female, fast, loud clip is mostly shown shots of women,
    and the example next to the question agrees with the clip on more attributes than a uniform draw."""
    import dataclasses

    from align_data.schemas import Paralinguistics, Voice
    from align_data.stages.quality.faithfulness import facts_from_seed
    from align_data.stages.targets.prompts import catalog

    pool = catalog()["description"]["shots"]
    para = Paralinguistics(duration_s=3.0, speech_rate_wps=3.8, f0_mean_hz=260.0, f0_std_hz=20.0,
                           pitch_level="high", rms_dbfs=-12.0, volume_level="high", speed_level="high")
    record = dataclasses.replace(_record("description"), voice=Voice("espeak", "en-us+f2", "female", "American", "en-us"),
                                 paralinguistics=para)
    female_last, n = 0, 300
    for seed in range(n):
        req = build_request(record, np.random.default_rng(seed))
        last = int(req.shots.split(",")[-1].split(":")[1])
        female_last += facts_from_seed(pool[last]["seed"])[0].gender == "female"
    assert female_last / n > 0.8


def test_interleaved_target_is_the_next_corpus_text():
    assert corpus_target(_record("interleaved")).response == "Then it slept."


class ScriptedClient:
    """Fault injection only: answers from a script instead of a model."""

    model_name = "scripted"
    backend = "scripted"

    def __init__(self, answers):
        self.answers = answers
        self.calls = []
        self.seeds = []

    def complete(self, prompts, sampling, seeds):
        self.calls.append(len(prompts))
        self.seeds.extend(seeds)
        if self.answers == "timeout":
            raise RecordError("llm_timeout", "server did not answer in 30s")
        return [Completion(*self.answers.pop(0), tokens_in=10, tokens_out=3) for _ in prompts]


def test_batches_group_tasks_in_order_and_errors_per_row():
    client = ScriptedClient([("first", "stop"), ("", "stop"), ("third", "length")])
    stage = TargetsStage(LLMConfig(batch_size=2), seed=0, client=client)
    recs = [_record("continuation", "a"), _record("description", "b"), _record("interleaved", "c"),
            _record("continuation", "d")]
    out = stage(recs)
    assert client.calls == [2, 1]  # [a, d] (continuation, in record order), then [b]
    assert out[0].targets[0].response == "first"
    assert out[3].filtered == "target_empty" and out[3].targets[0].response == ""  # kept for the filtered/ file
    assert out[2].targets[0].backend == "corpus"
    assert out[1].targets[0].finish_reason == "length" and out[1].targets[0].task == "description"
    assert stage.take_usage() == {"cache_hits": 0, "calls": 3, "failures": 0, "retries": 0,
                                  "tokens_in": 30, "tokens_out": 9}


def test_seed_per_record_does_not_depend_on_batching():
    recs = [_record("continuation", rid) for rid in ("a", "b", "c")]
    one, three = ScriptedClient([("x", "stop")] * 3), ScriptedClient([("x", "stop")] * 3)
    TargetsStage(LLMConfig(batch_size=1), seed=7, client=one)(recs)
    TargetsStage(LLMConfig(batch_size=3), seed=7, client=three)(recs)
    assert one.seeds == three.seeds and len(set(one.seeds)) == 3
    assert one.seeds == [record_seed(7, r) for r in recs]


def test_client_timeout_fails_the_batch_rows_only():
    stage = TargetsStage(LLMConfig(), seed=0, client=ScriptedClient("timeout"))
    out = stage([_record("continuation", "a"), _record("interleaved", "b")])
    assert out[0].error.kind == "llm_timeout" and out[1].live


def test_backend_decides_the_packages_checked_before_a_run():
    assert TargetsStage(LLMConfig(), seed=0).requires == ("ctranslate2", "transformers")
    assert TargetsStage(LLMConfig(backend="transformers"), seed=0).requires == ("torch", "transformers")
    assert TargetsStage(LLMConfig(backend="openai", model="m"), seed=0).requires == ("httpx",)


@pytest.mark.slow
def test_real_gemma_continuation_and_description():
    stage = TargetsStage(LLMConfig(backend="transformers", max_new_tokens=24, batch_size=2), seed=0)
    out = stage([_record("continuation", "a"), _record("description", "b")])
    for r in out:
        assert r.live, r.error
        t = r.targets[0]
        assert t.model == "gemma-3-270m" and t.backend == "transformers" and t.response
        assert "\n" not in t.response and t.finish_reason in ("stop", "length")
    again = TargetsStage(LLMConfig(backend="transformers", max_new_tokens=24, batch_size=2), seed=0)(
        [_record("continuation", "a"), _record("description", "b")])
    assert [r.targets for r in again] == [r.targets for r in out]  # greedy: same answers


def test_shared_prefix_ends_at_a_shot_boundary():
    from align_data.stages.targets.transformers_client import shared_prefix

    assert shared_prefix(["A\n\nB\n\nText: x", "A\n\nB\n\nText: y"]) == "A\n\nB\n\n"
    assert shared_prefix(["A\n\nB1", "A\n\nB2"]) == "A\n\n"
    assert shared_prefix(["Text: x", "Text: y"]) == ""


@pytest.mark.slow
def test_prefix_cache_gives_the_same_answers_as_full_prompts():
    from align_data.stages.targets.transformers_client import TransformersClient

    records = [_record("description", f"r{i}", f'[00:00:00 - 00:00:02]: "Line {i} was said." (Gender: Male)')
               for i in range(3)]
    prompts = [build_request(r, np.random.default_rng(0)).llm_prompt for r in records]
    client = TransformersClient("embedded")
    cached = client.generate(prompts, 12, 0.0, 1.0, 0)
    assert len(client._prefixes) == 1
    client.prefix_cache = False
    assert client.generate(prompts, 12, 0.0, 1.0, 0) == cached
