"""Targets stage: BLSP continuations, DeSTA2 descriptions and MTBI tasks from the LLM; InSerter targets from the
corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Sequence

from align_data.config import LLMConfig
from align_data.schemas import Record
from align_data.stages.base import RecordError, Stage, fail, rng_for
from align_data.stages.targets.client import CachedClient, Completion, LLMClient, Prompt, Sampling, make_client
from align_data.stages.targets.prompts import Request, build_request, check_mtbi, corpus_target, parse_response

BACKEND_PACKAGES = {"transformers": ("torch", "transformers"), "openai": ("httpx",), "vllm": ("vllm",)}
EMPTY = "target_empty"  # filter reason of an answer with nothing left after cleaning (always on)


def record_seed(seed: int, record: Record) -> int:
    """The sampling seed of one record's request: from (global seed, shard, record id), never from batching."""
    return int(rng_for(seed, record.shard_id, record.id, "targets-sample").integers(2**31))


class TargetsStage(Stage):
    """Batch the records' requests through the LLM client, in record order, and attach the targets. An answer
    that is empty once cleaned filters its record (``target_empty``); echo and over-length answers are filtered by
    the target-checks stage after this one (``quality.target_filters``).

    The client (backend + response cache) is made in ``setup()``; ``client=`` injects one (tests), and a bare
    backend given there is put behind a cache-less CachedClient so usage is counted the same way."""

    name: ClassVar[str] = "targets"
    reads: ClassVar[tuple[str, ...]] = ("text", "next_text", "task", "description")
    writes: ClassVar[tuple[str, ...]] = ("targets", "split")  # split: MTBI held-out tasks and phrasings
    lazy_setup: ClassVar[bool] = True

    def __init__(self, config: LLMConfig, seed: int, client: LLMClient | None = None,
                 cache_path: str | Path | None = None):
        self.config = config
        self.seed = seed
        self.cache_path = cache_path
        self.requires = BACKEND_PACKAGES[config.backend]
        check_mtbi(config.mtbi)  # an unknown task or phrasing id fails the plan check, not a worker
        self.client = client if client is None or isinstance(client, CachedClient) else CachedClient(client, None)
        self._usage: dict[str, int] = {}

    def setup(self) -> None:
        """Make the client on first use, so a worker whose rows need no LLM never loads or dials one."""
        if self.client is None:
            self.client = make_client(self.config, self.cache_path)

    def take_usage(self) -> dict[str, int]:
        return dict(self._usage)

    def __call__(self, batch: Sequence[Record]) -> list[Record]:
        out = list(batch)
        self._usage = {}
        pending: list[tuple[int, Request]] = []
        for i, record in enumerate(out):
            if not record.live:
                continue
            try:
                request = build_request(record, rng_for(self.seed, record.shard_id, record.id, self.name),
                                        self.config.mtbi)
                if request is None:
                    out[i] = dataclasses.replace(record, targets=(corpus_target(record),))
                else:
                    pending.append((i, request))
            except RecordError as exc:
                out[i] = fail(record, self.name, exc.kind, str(exc))
        # batches grouped by task, so a batch shares its few-shot prefix (the client caches it); stable order
        pending.sort(key=lambda item: item[1].task)
        if not pending:
            return out
        self.setup()
        self.client.take_usage()  # drop what a call that raised (ServiceUnavailable) left counted
        sampling = Sampling.from_config(self.config, chat=self.client.chat)
        size = self.config.batch_size
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            try:
                answers = self.client.complete([Prompt(r.llm_prompt, r.chat) for _, r in chunk], sampling,
                                               [record_seed(self.seed, out[i]) for i, _ in chunk])
            except RecordError as exc:  # a client that failed the whole batch
                answers = [exc] * len(chunk)
            for (i, request), answer in zip(chunk, answers, strict=True):
                if not isinstance(answer, Completion):
                    out[i] = fail(out[i], self.name, answer.kind, str(answer))
                    continue
                target = parse_response(answer.text, answer.finish_reason, request, self.client.model_name,
                                        self.client.backend, sampling.stop)
                split = request.split if request.split and out[i].split == "train" else out[i].split
                out[i] = dataclasses.replace(out[i], targets=(target,), split=split,
                                             filtered=None if target.response else EMPTY)
        self._usage = self.client.take_usage()
        return out
