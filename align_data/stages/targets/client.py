"""The LLM client contract, the response cache in front of every backend, and the backend chosen by config."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from align_data.config import LLMConfig
from align_data.stages.base import RecordError

if TYPE_CHECKING:
    from align_data.stages.targets.cache import ResponseCache


@dataclass(frozen=True, slots=True)
class Sampling:
    """Generation parameters shared by a batch of prompts (part of the cache key)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...] = ("\n",)

    @classmethod
    def from_config(cls, config: LLMConfig, chat: bool = False) -> "Sampling":
        """A few-shot completion answers on one line; a chat answer may run to the end of its first paragraph."""
        return cls(config.max_new_tokens, config.temperature, config.top_p, ("\n\n",) if chat else ("\n",))


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request in both forms: the few-shot completion text (base models) and the same shots as chat turns
    ``(role, content)`` (models with a chat template, chat endpoints). The backend picks the form it uses."""

    text: str
    chat: tuple[tuple[str, str], ...] = ()

    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.chat]


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated answer with its token counts (0 where a server does not report them)."""

    text: str
    finish_reason: str
    tokens_in: int = 0
    tokens_out: int = 0


USAGE_KEYS = ("cache_hits", "calls", "failures", "retries", "tokens_in", "tokens_out")

# per prompt: the answer, or the error that the record gets
Outcome = Completion | RecordError


class LLMClient(Protocol):
    """A backend: answers prompts in order; a prompt that fails alone comes back as a RecordError. ``chat`` says
    whether it answers the prompts' chat form (a chat template or endpoint) instead of their completion text."""

    model_name: str
    backend: str
    chat: bool

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int]) -> list[Outcome]: ...


def prompt_key_text(prompt: Prompt, chat: bool) -> str:
    """The form of a prompt that the cache key covers: its text, or its chat turns as JSON."""
    if not (chat and prompt.chat):
        return prompt.text
    return json.dumps(prompt.messages(), ensure_ascii=False, sort_keys=True)


class CachedClient:
    """A backend behind the response cache: only prompts never answered before reach it. Counts the work in
    ``usage`` (calls = prompts the backend generated, plus tokens, cache hits, failures, retries)."""

    def __init__(self, inner: LLMClient, cache: ResponseCache | None):
        self.inner = inner
        self.cache = cache
        self.model_name = inner.model_name
        self.backend = inner.backend
        self.chat = getattr(inner, "chat", False)
        self.plans_groups = getattr(inner, "plans_groups", False)  # takes any number of prompts, plans its calls
        self.usage: dict[Any, Counter[str]] = {}  # owner (a shard id, or None) -> counters

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int],
                 attempt: int = 0, owners: Sequence[Any] | None = None) -> list[Outcome]:
        """The answers, from the cache where it has them; ``attempt`` (a repair's number) is part of the key.
        ``owners`` (one per prompt, e.g. its shard) says whose counters each prompt's work goes to; a call's
        retries go to the owner of its first generated prompt."""
        from align_data.stages.targets.cache import cache_key

        owners = list(owners) if owners is not None else [None] * len(prompts)
        keys = [cache_key(self.model_name, self.backend, prompt_key_text(p, self.chat), sampling, s, attempt)
                for p, s in zip(prompts, seeds, strict=True)]
        hits = self.cache.get_many(keys) if self.cache is not None else {}
        out: list[Outcome | None] = [hits.get(k) for k in keys]
        missing = [i for i, o in enumerate(out) if o is None]
        for i, o in enumerate(out):
            if o is not None:
                self._count(owners[i])["cache_hits"] += 1
        if missing:
            retries_before = getattr(self.inner, "retries", 0)
            answers = self.inner.complete([prompts[i] for i in missing], sampling, [seeds[i] for i in missing])
            self._count(owners[missing[0]])["retries"] += getattr(self.inner, "retries", 0) - retries_before
            fresh = {}
            for i, answer in zip(missing, answers, strict=True):
                out[i] = answer
                usage = self._count(owners[i])
                usage["calls"] += 1
                if isinstance(answer, Completion):
                    usage["tokens_in"] += answer.tokens_in
                    usage["tokens_out"] += answer.tokens_out
                    fresh[keys[i]] = answer
                else:
                    usage["failures"] += 1
            if self.cache is not None:
                self.cache.put_many(fresh)
        return out  # type: ignore[return-value]

    def _count(self, owner: Any) -> Counter[str]:
        return self.usage.setdefault(owner, Counter())

    def take_usage(self) -> dict[str, int]:
        """The counters since the last call, all owners together (every one of USAGE_KEYS, zeros too), then
        zero."""
        total: Counter[str] = Counter()
        for counts in self.take_usage_by_owner().values():
            total.update(counts)
        return {k: total[k] for k in USAGE_KEYS}

    def take_usage_by_owner(self) -> dict[Any, dict[str, int]]:
        """The counters since the last call per owner (every one of USAGE_KEYS, zeros too), then zero."""
        usage = {owner: {k: counts[k] for k in USAGE_KEYS} for owner, counts in self.usage.items()}
        self.usage.clear()
        return usage


def make_client(config: LLMConfig, cache_path: str | Path | None) -> CachedClient:
    """The configured backend behind the response cache (``cache_path`` None or llm.cache off: no cache)."""
    if config.backend == "openai":
        from align_data.stages.targets.openai_client import OpenAIClient

        inner: LLMClient = OpenAIClient(config)
    elif config.backend == "vllm":
        from align_data.stages.targets.vllm_client import VLLMClient

        inner = VLLMClient(config)
    elif config.backend == "ctranslate2":
        from align_data.stages.targets.ctranslate2_client import CTranslate2Client

        inner = CTranslate2Client(config.model, config.quantization, config.threads)
    else:
        from align_data.stages.targets.transformers_client import TransformersClient

        inner = TransformersClient(config.model, config.threads, dtype=config.dtype)
    cache = None
    if config.cache and cache_path is not None:
        from align_data.stages.targets.cache import ResponseCache

        cache = ResponseCache(cache_path)
    return CachedClient(inner, cache)


def default_cache_path(config: LLMConfig, out_dir: str | Path | None) -> Path | None:
    """llm.cache_path, else OUT/cache/llm_responses.sqlite; None when there is no cache."""
    if not config.cache:
        return None
    if config.cache_path:
        return Path(config.cache_path)
    return None if out_dir is None else Path(out_dir) / "cache" / "llm_responses.sqlite"
