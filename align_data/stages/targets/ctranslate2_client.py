"""The ctranslate2 backend: the model converted once to CTranslate2 with int8 weights, batched generation on CPU
(or CUDA), greedy or seeded sampling, cut at the sampling's stop string like the transformers backend.

On CPU a step of the embedded Gemma 3 270M is bound by reading its weights (170M of its 268M parameters are the
262k-token output layer): int8 weights read a quarter of fp32's bytes, and the prompt's prefill runs as int8 GEMMs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from align_data.errors import AlignDataError
from align_data.stages.targets.client import Completion, Outcome, Prompt, Sampling
from align_data.stages.targets.transformers_client import render_prompt, stop_token_ids


def resolve_ct2_model(name: str, quantization: str) -> Path:
    """'embedded' → Gemma 3 270M converted once into the cache; a CTranslate2 folder (model.bin) as it is; an HF
    folder (config.json, no model.bin) converted once (per version of its files) into the model cache."""
    from align_data.models.gemma import convert_to_ct2, prepare_gemma_ct2

    if name == "embedded":
        return prepare_gemma_ct2(quantization)
    path = Path(name)
    if (path / "model.bin").exists():
        return path
    if (path / "config.json").exists():
        import hashlib

        from align_data.models.cache import cache_dir

        # the folder and its files' sizes and times: new weights in the same folder are converted anew
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file())
        tag = hashlib.sha256(repr((str(path.resolve()), files)).encode()).hexdigest()[:12]
        return convert_to_ct2(path, cache_dir() / f"{path.name}-{tag}-ct2-{quantization}", quantization)
    raise AlignDataError(f"llm.model={name!r} is not 'embedded', a CTranslate2 model folder (model.bin) nor an HF "
                         "model folder (config.json)")


def tokenizer_folder(path: Path) -> Path:
    """Where the tokenizer of a converted model loads from: the HF folder it was converted from, where it still
    exists (transformers warns about a tokenizer beside a CTranslate2 config), else the model folder."""
    from align_data.models.gemma import converted_from

    source = converted_from(path)
    return source if source and (source / "config.json").exists() else path


# Costs of one CPU thread on Gemma 3 270M int8, measured by benchmarks/bench_targets.py --steps: a prompt token
# in prefill, and one decode step of a group of b prompts (reading every weight once, the 262k-row output layer
# most of it: nearly flat in b)
PREFILL_S = 0.00065
STEP_S, STEP_PER_ROW_S = 0.028, 0.0025


def group_cost(lengths: Sequence[int], decode_steps: float) -> float:
    """Estimated seconds of one generate call over prompts of ``lengths`` (sorted). CTranslate2 prefills the group
    together up to its shortest prompt and feeds the rest one decode step at a time, then decodes the answers."""
    step = STEP_S + STEP_PER_ROW_S * len(lengths)
    return PREFILL_S * lengths[0] * len(lengths) + step * (lengths[-1] - lengths[0] + decode_steps)


def plan_groups(lengths: Sequence[int], decode_steps: float, max_group: int,
                keys: Sequence[Any] = ()) -> list[list[int]]:
    """Indices of the prompts in generate calls: length-sorted runs of at most ``max_group`` whose estimated cost
    (``group_cost``) sums lowest, by dynamic programming. Prompts of one length share a call (their decode steps
    are nearly free to add); a prompt far longer than the others goes alone rather than be fed one step a token.
    ``keys`` (the token ids) order prompts of one length, so the same prompts form the same groups in any order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], keys[i] if keys else i))
    sizes = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(sizes)
    cut = [0] * (len(sizes) + 1)
    for end in range(1, len(sizes) + 1):
        for start in range(max(0, end - max_group), end):
            cost = best[start] + group_cost(sizes[start:end], decode_steps)
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(sizes)
    while end:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def default_threads() -> int:
    """One thread per core the worker was given (Ray sets OMP_NUM_THREADS to its CPUs), else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


class CTranslate2Client:
    """Loads a CTranslate2 generator once; ``complete`` answers prompts in order.

    Greedy batches run on the loaded generator. CTranslate2 seeds its sampler once per thread, on first use, so a
    sampled batch runs on a generator made for it after ``set_random_seed(seed)``: the same prompts and seed give
    the same answers in any order of calls (~0.4 s to make one and warm it, paid only by sampled batches)."""

    backend = "ctranslate2"
    max_group = 8  # prompts per generate call at most (see ``plan_groups``)
    plans_groups = True  # the targets stage hands it every prompt of an attempt at once

    def __init__(self, model: str, quantization: str = "int8", threads: int | None = None, device: str = "auto"):
        from align_data.models.gemma import CT2_MISSING

        try:
            import ctranslate2
        except ImportError as exc:
            raise AlignDataError(CT2_MISSING) from exc
        from transformers import AutoTokenizer

        self.path = resolve_ct2_model(model, quantization)
        self.quantization = quantization
        base = "gemma-3-270m" if model == "embedded" else Path(model).name
        self.model_name = f"{base} {quantization}"  # with backend "ctranslate2", the cache key names engine and weights
        self.device = ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu") if device == "auto" else device
        self.threads = threads or default_threads()
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(self.path)))
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._ct2 = ctranslate2
        self.generator = self._generator()
        self._stop_ids: dict[tuple[str, ...], list[int]] = {}

    def _generator(self) -> Any:
        compute = self.quantization if self.device == "cpu" else f"{self.quantization}_float16"
        return self._ct2.Generator(str(self.path), device=self.device, compute_type=compute,
                                   intra_threads=self.threads, inter_threads=1)

    def stop_ids_for(self, stop: tuple[str, ...]) -> list[int]:
        """Tokens that end an answer at ``stop`` (see ``stop_token_ids``), with generation_config.json's ends."""
        if stop not in self._stop_ids:
            config = Path(self.path, "generation_config.json")
            ends = json.loads(config.read_text()).get("eos_token_id") if config.exists() else None
            self._stop_ids[stop] = stop_token_ids(self.tokenizer, stop, ends)
        return self._stop_ids[stop]

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, self.chat, prompt)

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int]) -> list[Outcome]:
        """The LLMClient contract: the prompts in the generate calls ``plan_groups`` picks; when sampling, the first
        prompt's seed seeds the batch."""
        chat = self.chat and all(p.chat for p in prompts)
        ids = [self.tokenizer(self.render(p), add_special_tokens=not chat)["input_ids"] for p in prompts]
        stop_ids = self.stop_ids_for(sampling.stop)
        kwargs: dict[str, Any] = dict(max_length=sampling.max_new_tokens, end_token=stop_ids, return_end_token=True,
                                      include_prompt_in_result=False)
        generator = self.generator
        if sampling.temperature > 0:
            self._ct2.set_random_seed(int(seeds[0]) if seeds else 0)
            generator = self._generator()
            kwargs.update(sampling_topk=0, sampling_topp=sampling.top_p, sampling_temperature=sampling.temperature)
        else:
            kwargs.update(sampling_topk=1)
        tokens = [self.tokenizer.convert_ids_to_tokens(i) for i in ids]
        results: list[Any] = [None] * len(ids)
        for group in plan_groups([len(i) for i in ids], sampling.max_new_tokens, self.max_group, ids):
            answers = generator.generate_batch([tokens[i] for i in group], max_batch_size=len(group), **kwargs)
            for i, answer in zip(group, answers, strict=True):
                results[i] = answer
        stops = set(stop_ids)
        out: list[Outcome] = []
        for prompt_ids, result in zip(ids, results, strict=True):
            row = result.sequences_ids[0]
            cut = next((i for i, t in enumerate(row) if t in stops), None)
            answer = row if cut is None else row[:cut]
            out.append(Completion(self.tokenizer.decode(answer, skip_special_tokens=True), "length" if cut is None
                                  else "stop", len(prompt_ids), len(answer) + (cut is not None)))
        return out
