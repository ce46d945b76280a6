"""The vllm backend: vLLM's offline engine, made once per worker, one batched ``generate`` per call with a seed per
request; a model whose tokenizer has a chat template is asked in chat turns."""

from __future__ import annotations

from typing import Any, Sequence

from align_data.config import LLMConfig
from align_data.stages.targets.client import Completion, Outcome, Prompt, Sampling
from align_data.stages.targets.transformers_client import render_prompt, resolve_model

GIB = 1024 ** 3


def engine_options(config: LLMConfig) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments from the llm config (pure: tested without vLLM)."""
    options: dict[str, Any] = {"tensor_parallel_size": config.tensor_parallel_size, "dtype": config.dtype,
                               "gpu_memory_utilization": config.gpu_memory_utilization,
                               "enforce_eager": config.enforce_eager, "seed": 0}
    if config.max_model_len is not None:
        options["max_model_len"] = config.max_model_len
    if config.kv_cache_gb is not None:
        options["kv_cache_memory_bytes"] = int(config.kv_cache_gb * GIB)
    if config.tensor_parallel_size > 1:
        # engine processes on the GPUs this worker holds (a Ray actor's), not a second set of Ray placements
        options["distributed_executor_backend"] = "mp"
    return options


def with_bos(ids: list[int], bos_id: int | None) -> list[int]:
    """Token ids that start with BOS where the model has one (some tokenizers do not add it; Gemma needs it)."""
    return ids if bos_id is None or ids[:1] == [bos_id] else [bos_id, *ids]


class VLLMClient:
    """Holds one ``vllm.LLM``; ``complete`` hands vLLM token ids (BOS ensured) and a SamplingParams per prompt
    carrying that prompt's seed, so an answer does not depend on the batch it came in."""

    backend = "vllm"

    def __init__(self, config: LLMConfig):
        from vllm import LLM

        path = resolve_model(config.model)
        self.model_name = "gemma-3-270m" if config.model == "embedded" else path.name
        self.engine = LLM(model=str(path), **engine_options(config))
        self.tokenizer = self.engine.get_tokenizer()
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, self.chat, prompt)

    def token_ids(self, prompt: Prompt) -> list[int]:
        text = self.render(prompt)
        templated = self.chat and bool(prompt.chat)  # a chat template writes its own BOS
        return with_bos(self.tokenizer.encode(text, add_special_tokens=not templated), self.tokenizer.bos_token_id)

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int]) -> list[Outcome]:
        """The LLMClient contract: answers in prompt order."""
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                 top_p=sampling.top_p, seed=seed, stop=list(sampling.stop))
                  for seed in seeds]
        inputs = [{"prompt_token_ids": self.token_ids(p)} for p in prompts]
        results = self.engine.generate(inputs, params, use_tqdm=False)
        out: list[Outcome] = []
        for result in results:
            answer = result.outputs[0]
            out.append(Completion(answer.text, answer.finish_reason or "unknown", len(result.prompt_token_ids),
                                  len(answer.token_ids)))
        return out
