"""Targets stage: BLSP continuations and DeSTA2 descriptions from the LLM; InSerter targets from the corpus."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

from align_data.config import LLMConfig
from align_data.schemas import Record
from align_data.stages.base import RecordError, Stage, fail, rng_for
from align_data.stages.targets.prompts import Request, build_request, corpus_target, parse_response


class TargetsStage(Stage):
    """Batch the records' requests through the LLM client, in record order, and attach the targets."""

    name: ClassVar[str] = "targets"
    reads: ClassVar[tuple[str, ...]] = ("text", "next_text", "task", "description")
    writes: ClassVar[tuple[str, ...]] = ("targets",)
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    lazy_setup: ClassVar[bool] = True

    def __init__(self, config: LLMConfig, seed: int, client: Any = None):
        self.config = config
        self.seed = seed
        self.client = client

    def setup(self) -> None:
        """Load the LLM on first use, so a worker whose rows need no LLM never pays for it."""
        if self.client is None:
            from align_data.stages.targets.transformers_client import TransformersClient

            self.client = TransformersClient(self.config.model, self.config.threads)

    def __call__(self, batch: Sequence[Record]) -> list[Record]:
        out = list(batch)
        pending: list[tuple[int, Request]] = []
        for i, record in enumerate(out):
            if not record.live:
                continue
            try:
                request = build_request(record, rng_for(self.seed, record.shard_id, record.id, self.name))
                if request is None:
                    out[i] = dataclasses.replace(record, targets=(corpus_target(record),))
                else:
                    pending.append((i, request))
            except RecordError as exc:
                out[i] = fail(record, self.name, exc.kind, str(exc))
        # one task per batch, so a batch shares its few-shot prefix (the client caches it); stable order
        pending.sort(key=lambda item: item[1].task)
        if pending:
            self.setup()
        size = self.config.batch_size
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            first = out[chunk[0][0]]
            seed = int(rng_for(self.seed, first.shard_id, first.id, "targets-sample").integers(2**31))
            try:
                answers = self.client.generate([r.llm_prompt for _, r in chunk], self.config.max_new_tokens,
                                               self.config.temperature, self.config.top_p, seed)
            except RecordError as exc:  # a client that failed the whole batch (e.g. server timeout)
                for i, _ in chunk:
                    out[i] = fail(out[i], self.name, exc.kind, str(exc))
                continue
            for (i, request), (raw, reason) in zip(chunk, answers, strict=True):
                try:
                    target = parse_response(raw, reason, request, self.client.model_name, self.client.backend)
                    out[i] = dataclasses.replace(out[i], targets=(target,))
                except RecordError as exc:
                    out[i] = fail(out[i], self.name, exc.kind, str(exc))
        return out
