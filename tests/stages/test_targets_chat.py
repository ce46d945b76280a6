"""Chat templates: a model whose tokenizer has one is asked in chat turns (transformers and vllm backends), a base
model with the few-shot text. A tiny tokenizer and a random tiny model are built here (no downloads)."""

from pathlib import Path

import numpy as np
import pytest

from align_data.config import LLMConfig
from align_data.schemas import Record, SourceRef
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.client import Prompt, Sampling, prompt_key_text
from align_data.stages.targets.prompts import build_request

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
WORDS = ("the cat sat on mat continue following text in a coherent and engaging style with less than 40 words "
         "it purred then slept answer user assistant end").split()


def _tiny_model(folder: Path, chat_template: str | None) -> Path:
    """A 2-layer random Llama and a word-level tokenizer that adds BOS, saved as an HF folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<|", "|>", "\n", ".", ","]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + WORDS))}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"], pad_token_id=vocab["<pad>"])
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _record(rid: str = "r-1") -> Record:
    return Record(id=rid, shard_id=0, source=SourceRef("t", "d", 0), text="The cat sat on the mat.",
                  task="continuation")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("chat"), TEMPLATE)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("base"), None)


def test_transformers_renders_the_chat_turns_through_the_template_with_one_bos(chat_model):
    from align_data.stages.targets.transformers_client import TransformersClient

    client = TransformersClient(str(chat_model))
    request = build_request(_record(), np.random.default_rng(0))
    prompt = Prompt(request.llm_prompt, request.chat)
    text = client.render(prompt)
    assert client.chat and text.startswith("<s><|user|> Continue the following text")
    assert text.count("<|assistant|>") == len(request.chat) // 2 + 1 and text.endswith("<|assistant|>")
    assert "Continuation:" not in text  # the few-shot completion text is not what a chat model reads
    (answer,) = client.complete([prompt], Sampling(4, 0.0, 1.0, ("\n\n",)), [0])
    ids = client.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert answer.tokens_in == len(ids) and ids[:2].count(client.tokenizer.bos_token_id) == 1
    assert 1 <= answer.tokens_out <= 4


def test_transformers_base_model_reads_the_few_shot_text(base_model):
    from align_data.stages.targets.transformers_client import TransformersClient

    client = TransformersClient(str(base_model))
    request = build_request(_record(), np.random.default_rng(0))
    prompt = Prompt(request.llm_prompt, request.chat)
    assert not client.chat and client.render(prompt) == request.llm_prompt
    (answer,) = client.complete([prompt], Sampling(4, 0.0, 1.0), [0])
    assert answer.tokens_in == len(client.tokenizer(request.llm_prompt)["input_ids"])


def test_the_stage_asks_a_chat_model_to_stop_at_a_blank_line_and_keys_the_cache_on_the_turns(chat_model, tmp_path):
    stage = TargetsStage(LLMConfig(backend="transformers", model=str(chat_model), max_new_tokens=4), seed=0,
                         cache_path=tmp_path / "cache.sqlite")
    (record,) = stage([_record()])
    assert stage.client.chat and record.targets[0].backend == "transformers"
    assert Sampling.from_config(stage.config, chat=True).stop == ("\n\n",)  # chat: stop at a blank line
    assert Sampling.from_config(stage.config).stop == ("\n",)  # few-shot text: one line
    assert stage.take_usage()["calls"] == 1
    request = build_request(_record(), np.random.default_rng(0))
    assert prompt_key_text(Prompt(request.llm_prompt, request.chat), chat=True) != request.llm_prompt
    assert prompt_key_text(Prompt(request.llm_prompt, request.chat), chat=False) == request.llm_prompt
    again = TargetsStage(LLMConfig(backend="transformers", model=str(chat_model), max_new_tokens=4), seed=0,
                         cache_path=tmp_path / "cache.sqlite")
    assert again([_record()])[0].targets == record.targets and again.take_usage()["cache_hits"] == 1


def test_vllm_client_renders_and_tokenizes_like_the_model_wants(chat_model, base_model):
    """The vllm client's prompt handling without an engine (vLLM is not in this venv)."""
    from transformers import AutoTokenizer

    from align_data.stages.targets.vllm_client import VLLMClient, with_bos

    request = build_request(_record(), np.random.default_rng(0))
    prompt = Prompt(request.llm_prompt, request.chat)
    for folder, chat in ((chat_model, True), (base_model, False)):
        client = object.__new__(VLLMClient)
        client.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        client.chat = bool(client.tokenizer.chat_template)
        ids = client.token_ids(prompt)
        bos = client.tokenizer.bos_token_id
        assert client.chat == chat and ids[0] == bos and ids[1] != bos
        assert (client.render(prompt) == request.llm_prompt) != chat
    assert with_bos([5, 6], 2) == [2, 5, 6] and with_bos([2, 5], 2) == [2, 5] and with_bos([5], None) == [5]


def test_vllm_engine_options_follow_the_llm_config():
    from align_data.stages.targets.vllm_client import engine_options

    plain = engine_options(LLMConfig(backend="vllm"))
    assert plain["tensor_parallel_size"] == 1 and "distributed_executor_backend" not in plain
    assert "kv_cache_memory_bytes" not in plain and "max_model_len" not in plain
    big = engine_options(LLMConfig(backend="vllm", tensor_parallel_size=4, kv_cache_gb=1.5, max_model_len=2048,
                                   enforce_eager=True, dtype="bfloat16"))
    assert big["distributed_executor_backend"] == "mp" and big["kv_cache_memory_bytes"] == int(1.5 * 2 ** 30)
    assert big["max_model_len"] == 2048 and big["enforce_eager"] and big["dtype"] == "bfloat16"


def test_a_multi_gpu_engine_needs_the_llm_pool_to_hold_its_gpus(corpus_file):
    from align_data.errors import AlignDataError
    from tests.conftest import make_config

    llm = {"backend": "vllm", "tensor_parallel_size": 2}
    with pytest.raises(AlignDataError, match="runner.llm.num_gpus >= 2"):
        make_config(corpus_file, llm=llm, runner={"kind": "ray"})
    with pytest.raises(AlignDataError, match="runner.llm.num_gpus >= 2"):
        make_config(corpus_file, llm=llm, runner={"kind": "ray", "layout": "split", "llm": {"num_gpus": 1}})
    ok = make_config(corpus_file, llm=llm, runner={"kind": "ray", "layout": "split", "llm": {"num_gpus": 2}})
    assert ok.runner.llm.num_gpus == 2
    assert make_config(corpus_file, llm={"backend": "vllm"}, runner={"kind": "ray"}).llm.tensor_parallel_size == 1
    with pytest.raises(AlignDataError, match="endpoint='chat' is for llm.backend='openai'"):
        make_config(corpus_file, llm={"endpoint": "chat"})


def test_vllm_is_a_package_checked_before_the_run():
    assert TargetsStage(LLMConfig(backend="vllm"), seed=0).requires == ("vllm",)


def test_transformers_device_and_dtype_follow_the_gpu():
    from align_data.errors import AlignDataError
    from align_data.stages.targets.transformers_client import pick_device_dtype

    assert pick_device_dtype("auto", "auto", cuda_available=False) == ("cpu", "float32")
    assert pick_device_dtype("auto", "auto", cuda_available=True) == ("cuda", "bfloat16")
    assert pick_device_dtype("cpu", "auto", cuda_available=True) == ("cpu", "float32")
    assert pick_device_dtype("auto", "float16", cuda_available=True) == ("cuda", "float16")
    with pytest.raises(AlignDataError, match="no CUDA GPU"):
        pick_device_dtype("cuda", "auto", cuda_available=False)


def test_a_non_fp32_dtype_names_its_answers_apart(base_model):
    """bf16 answers are another model's for the response cache and the targets' model column."""
    import torch

    from align_data.stages.targets.transformers_client import TransformersClient

    fp32 = TransformersClient(str(base_model), device="cpu")
    bf16 = TransformersClient(str(base_model), device="cpu", dtype="bfloat16")
    assert fp32.model_name == base_model.name and bf16.model_name == f"{base_model.name} bfloat16"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    request = build_request(_record(), np.random.default_rng(0))
    (answer,) = bf16.complete([Prompt(request.llm_prompt, request.chat)], Sampling(3, 0.0, 1.0), [0])
    assert 1 <= answer.tokens_out <= 3
