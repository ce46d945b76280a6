"""The transformers backend: batched greedy or seeded-sampling generation, left padded, that stops at the sampling's
stop string; a model whose tokenizer has a chat template is asked in chat turns."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

from align_data.errors import AlignDataError
from align_data.stages.targets.client import Completion, Outcome, Prompt, Sampling


def resolve_model(name: str) -> Path:
    """'embedded' → the prepared Gemma 3 270M folder (prepared on first use); else a local folder."""
    if name == "embedded":
        from align_data.models.gemma import prepare_gemma

        return prepare_gemma()
    path = Path(name)
    if not (path / "config.json").exists():
        raise AlignDataError(f"llm.model={name!r} is not 'embedded' nor an HF model folder with config.json")
    return path


def shared_prefix(prompts: list[str], boundary: str = "\n\n") -> str:
    """The longest common prefix of ``prompts`` that ends at ``boundary`` (the few-shot examples)."""
    common = os.path.commonprefix(prompts)
    cut = common.rfind(boundary)
    return common[: cut + len(boundary)] if cut > 0 else ""


def render_prompt(tokenizer: Any, chat: bool, prompt: Prompt) -> str:
    """What the model reads: the chat turns through the tokenizer's chat template (``chat``: it has one), or the
    few-shot text. Shared by the backends that tokenize themselves (transformers, ctranslate2, vllm)."""
    if chat and prompt.chat:
        return tokenizer.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
    return prompt.text


def stop_token_ids(tokenizer: Any, stop: tuple[str, ...], ends: int | list[int] | None = None) -> list[int]:
    """Tokens whose text holds a stop string (byte-fallback '<0x0A>' is a newline), plus end of sequence and
    ``ends`` (the generation config's eos ids: end of turn, where it lists it)."""
    extra = ends if isinstance(ends, list) else [ends]
    return sorted({i for t, i in tokenizer.get_vocab().items() if any(s in t.replace("<0x0A>", "\n") for s in stop)}
                  | {e for e in {*extra, tokenizer.eos_token_id} if e is not None})


def pick_device_dtype(device: str, dtype: str, cuda_available: bool) -> tuple[str, str]:
    """(device, dtype name) of the transformers backend: 'auto' is the GPU when torch sees one, and there bfloat16;
    float32 on the CPU (bf16 there was impractically slow, see shared/MODELS.md)."""
    if device == "cuda" and not cuda_available:
        raise AlignDataError("the transformers backend was asked for cuda but torch sees no CUDA GPU")
    chosen = "cuda" if device == "cuda" or (device == "auto" and cuda_available) else "cpu"
    return chosen, (("bfloat16" if chosen == "cuda" else "float32") if dtype == "auto" else dtype)


class TransformersClient:
    """Loads a causal LM once; ``complete`` answers prompts in order (chat turns through the tokenizer's chat
    template when it has one, else the few-shot text).

    The few-shot prefix that a batch shares is run once per worker and its KV cache reused (on CPU the
    prefill of ~300 prompt tokens per row costs more than generating the answer). On a GPU (``device`` 'auto')
    the model runs there, in bfloat16 unless ``dtype`` says otherwise; a dtype other than float32 is part of
    ``model_name`` (so of the response cache key and the targets' ``model``): its answers never mix with fp32's."""

    backend = "transformers"
    max_cached_prefixes = 8

    def __init__(self, model: str, threads: int | None = None, prefix_cache: bool = True, device: str = "auto",
                 dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        self.device, self.dtype = pick_device_dtype(device, dtype, torch.cuda.is_available())
        base = "gemma-3-270m" if model == "embedded" else path.name
        self.model_name = base if self.dtype == "float32" else f"{base} {self.dtype}"
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, self.dtype))
        self.model = self.model.to(self.device).eval()
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._stop_ids: dict[tuple[str, ...], list[int]] = {}
        self._prefixes: dict[str, tuple[Any, Any]] = {}
        self.prefix_cache = prefix_cache

    @property
    def stop_ids(self) -> list[int]:
        """The token ids that end a one-line answer (the few-shot completion prompts' stop)."""
        return self.stop_ids_for(("\n",))

    def stop_ids_for(self, stop: tuple[str, ...]) -> list[int]:
        """Tokens that end an answer at ``stop`` (see ``stop_token_ids``), with the generation config's ends."""
        if stop not in self._stop_ids:
            self._stop_ids[stop] = stop_token_ids(self.tokenizer, stop, self.model.generation_config.eos_token_id)
        return self._stop_ids[stop]

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, self.chat, prompt)

    def _prefix_cache(self, prefix: str, special: bool) -> tuple[Any, Any]:
        """Token ids and KV cache of ``prefix`` (batch 1), computed once and kept."""
        import torch

        if prefix not in self._prefixes:
            if len(self._prefixes) >= self.max_cached_prefixes:
                self._prefixes.pop(next(iter(self._prefixes)))
            ids = self.tokenizer(prefix, return_tensors="pt", add_special_tokens=special)["input_ids"].to(self.device)
            with torch.inference_mode():
                cache = self.model(input_ids=ids, use_cache=True).past_key_values
            self._prefixes[prefix] = (ids, cache)
        return self._prefixes[prefix]

    def _inputs(self, prompts: list[str], special: bool = True) -> dict[str, Any]:
        """generate() inputs: [shared prefix from cache][left-padded suffixes] with a matching mask. ``special``:
        add the tokenizer's BOS (a chat template writes its own)."""
        import torch

        prefix = shared_prefix(prompts) if self.prefix_cache else ""
        if not prefix:
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=special)
            return {k: v.to(self.device) for k, v in enc.items()}
        prefix_ids, cache = self._prefix_cache(prefix, special)
        rest = self.tokenizer([p[len(prefix):] for p in prompts], add_special_tokens=False,
                              return_tensors="pt", padding=True).to(self.device)
        batch = len(prompts)
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(batch)
        ones = torch.ones(batch, prefix_ids.shape[1], dtype=rest["attention_mask"].dtype, device=self.device)
        return {"input_ids": torch.cat([prefix_ids.expand(batch, -1), rest["input_ids"]], dim=1),
                "attention_mask": torch.cat([ones, rest["attention_mask"]], dim=1),
                "past_key_values": cache}

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[tuple[str, str]]:
        """(text, finish_reason) per few-shot text prompt; one seed for the whole batch."""
        return [(c.text, c.finish_reason)
                for c in self._generate(prompts, max_new_tokens, temperature, top_p, seed, self.stop_ids)]

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int]) -> list[Outcome]:
        """The LLMClient contract. One batched generate: when sampling, the first prompt's seed seeds the batch
        (torch draws for the batch as a whole)."""
        chat = self.chat and all(p.chat for p in prompts)
        return list(self._generate([self.render(p) for p in prompts], sampling.max_new_tokens, sampling.temperature,
                                   sampling.top_p, seeds[0] if seeds else 0, self.stop_ids_for(sampling.stop),
                                   special=not chat))

    def _generate(self, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                  seed: int, stop_ids: list[int], special: bool = True) -> list[Completion]:
        import torch

        enc = self._inputs(prompts, special)
        sampling = temperature > 0
        kwargs = dict(do_sample=sampling, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id)
        if sampling:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
            torch.manual_seed(seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        stops = set(stop_ids)
        for row, tokens_in in zip(new.tolist(), prompt_tokens, strict=True):
            cut = next((i for i, t in enumerate(row) if t in stops), None)
            tokens = row if cut is None else row[:cut]
            reason = "length" if cut is None else "stop"
            results.append(Completion(self.tokenizer.decode(tokens, skip_special_tokens=True), reason,
                                      int(tokens_in), len(tokens) + (cut is not None)))
        return results
