"""The ctranslate2 backend: a tiny random-init Gemma 3 converted the way a user's HF folder is, and the embedded
Gemma 3 270M (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from align_data.config import LLMConfig
from align_data.errors import AlignDataError
from align_data.stages.targets.client import Completion, Prompt, Sampling, make_client

ctranslate2 = pytest.importorskip("ctranslate2")

PROMPTS = [Prompt("The alarm rang at seven and"), Prompt("Rain fell all afternoon over the harbour town"),
           Prompt("No target here.")]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from tests.trainer.conftest import _tiny_tokenizer

    root = tmp_path_factory.mktemp("tiny-ct2")
    torch.manual_seed(0)
    lm = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=1024, sliding_window=64,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, initializer_range=0.1))
    lm.save_pretrained(root / "tiny-gemma")
    _tiny_tokenizer().save_pretrained(root / "tiny-gemma")
    return root / "tiny-gemma"


@pytest.fixture
def client(tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from align_data.stages.targets.ctranslate2_client import CTranslate2Client

    monkeypatch.setenv("ALIGN_DATA_CACHE", str(tmp_path / "cache"))
    return CTranslate2Client(str(tiny_lm), "int8", threads=1)


def test_an_hf_folder_is_converted_once_and_named_with_its_weights(client, tiny_lm: Path, tmp_path: Path) -> None:
    from align_data.stages.targets.ctranslate2_client import resolve_ct2_model

    assert client.path.parent == tmp_path / "cache" and (client.path / "model.bin").exists()
    assert client.model_name == "tiny-gemma int8" and client.backend == "ctranslate2"
    before = (client.path / "model.bin").stat().st_mtime_ns
    assert resolve_ct2_model(str(tiny_lm), "int8") == client.path  # not converted again
    assert (client.path / "model.bin").stat().st_mtime_ns == before
    assert resolve_ct2_model(str(client.path), "int8") == client.path  # a converted folder is used as it is


def test_greedy_answers_are_deterministic_and_counted(client) -> None:
    sampling = Sampling(max_new_tokens=8, temperature=0.0, top_p=1.0)
    first = client.complete(PROMPTS, sampling, [1, 2, 3])
    again = client.complete(list(reversed(PROMPTS)), sampling, [3, 2, 1])
    assert first == list(reversed(again))  # a row's answer does not depend on its batch neighbours
    for prompt, answer in zip(PROMPTS, first, strict=True):
        assert isinstance(answer, Completion) and answer.finish_reason in ("stop", "length")
        assert answer.tokens_in == len(client.tokenizer(prompt.text)["input_ids"])
        assert 1 <= answer.tokens_out <= 8 and "\n" not in answer.text


def test_a_sampled_batch_depends_on_its_seed_only(client) -> None:
    sampling = Sampling(max_new_tokens=12, temperature=1.5, top_p=1.0)
    a = client.complete(PROMPTS, sampling, [7, 7, 7])
    client.complete(PROMPTS, sampling, [8, 8, 8])  # other draws in between change nothing
    client.complete(PROMPTS, Sampling(max_new_tokens=4, temperature=0.0, top_p=1.0), [0, 0, 0])
    assert client.complete(PROMPTS, sampling, [7, 7, 7]) == a
    draws = {tuple(c.text for c in client.complete(PROMPTS, sampling, [s] * 3)) for s in range(4)}
    assert len(draws) > 1


def test_end_of_sequence_stops_an_answer(client) -> None:
    assert client.tokenizer.eos_token_id in client.stop_ids_for(("\n",))


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path: Path) -> None:
    from align_data.stages.targets.ctranslate2_client import resolve_ct2_model

    with pytest.raises(AlignDataError, match="CTranslate2 model folder"):
        resolve_ct2_model(str(tmp_path), "int8")


@pytest.mark.slow
def test_embedded_gemma_answers_through_the_stage_the_same_bytes_twice() -> None:
    from tests.stages.test_targets import _record

    from align_data.stages.targets.stage import TargetsStage

    config = LLMConfig(max_new_tokens=24, batch_size=2)
    assert config.backend == "ctranslate2"
    records = [_record("continuation", "a"), _record("description", "b")]
    out = TargetsStage(config, seed=0)(records)
    for r in out:
        assert r.live, r.error
        t = r.targets[0]
        assert t.model == "gemma-3-270m int8" and t.backend == "ctranslate2"
        assert len(t.response.split()) >= 2 and "\n" not in t.response
    again = TargetsStage(config, seed=0)(records)
    assert [r.targets for r in again] == [r.targets for r in out]
    client = make_client(LLMConfig(max_new_tokens=16), None).inner
    sampled = Sampling(max_new_tokens=16, temperature=0.7, top_p=0.95)
    prompt = [Prompt("Text: The kettle took forever to boil.\nContinuation:")] * 2
    assert client.complete(prompt, sampled, [5, 5]) == client.complete(prompt, sampled, [5, 5])


def test_planned_groups_cover_every_prompt_once_and_keep_far_lengths_apart() -> None:
    from align_data.stages.targets.ctranslate2_client import group_cost, plan_groups

    lengths = [450, 140, 441, 146, 146, 155, 462, 173]
    groups = plan_groups(lengths, 40, 8)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:  # each group is a run of lengths: no short prompt fed token by token behind a long one
        assert max(lengths[i] for i in group) - min(lengths[i] for i in group) < 100
    assert sum(group_cost(sorted(lengths[i] for i in g), 40) for g in groups) < group_cost(sorted(lengths), 40)
    assert plan_groups([300] * 8, 40, 8) == [list(range(8))]  # one length: one call
    assert sorted(len(g) for g in plan_groups([300] * 10, 40, 4)) == [2, 4, 4]  # at most max_group a call
    keys = [[i] for i in range(8)]
    shuffled = [3, 7, 0, 5, 1, 6, 2, 4]  # the same prompts in another order form the same groups
    a = {tuple(sorted(keys[i][0] for i in g)) for g in plan_groups(lengths, 40, 8, keys)}
    b = {tuple(sorted(keys[shuffled[i]][0] for i in g))
         for g in plan_groups([lengths[j] for j in shuffled], 40, 8, [keys[j] for j in shuffled])}
    assert a == b


def test_prompts_of_far_lengths_answer_as_they_do_alone(client) -> None:
    sampling = Sampling(max_new_tokens=6, temperature=0.0, top_p=1.0)
    long_prompt = Prompt(" ".join(["The harbour lights came on one by one along the quay."] * 12))
    together = client.complete([PROMPTS[0], long_prompt], sampling, [0, 0])
    assert together == [client.complete([p], sampling, [0])[0] for p in (PROMPTS[0], long_prompt)]
