"""Targets stage: BLSP continuations, DeSTA2 descriptions and MTBI tasks from the LLM; InSerter targets from the
corpus. An answer that fails a check that would filter its record is asked again first (repair)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

from align_data.config import LLMConfig, QualityConfig
from align_data.errors import ServiceUnavailable
from align_data.faults import crash_point
from align_data.schemas import Record, Target
from align_data.stages.base import RecordError, Stage, fail, rng_for
from align_data.stages.quality.checks import TARGET_CHECKS, check_target, record_facts
from align_data.stages.targets.client import CachedClient, Completion, LLMClient, Prompt, Sampling, make_client
from align_data.stages.targets.prompts import (Request, build_request, check_mtbi, corpus_target, parse_response,
                                               shot_indices, shot_transcripts)

BACKEND_PACKAGES = {"ctranslate2": ("ctranslate2", "transformers"), "transformers": ("torch", "transformers"),
                    "openai": ("httpx",), "vllm": ("vllm",)}
EMPTY = "target_empty"  # filter reason of an answer with nothing left after cleaning (always on)


def record_seed(seed: int, record: Record, attempt: int = 0) -> int:
    """The sampling seed of one record's request: from (global seed, shard, record id, attempt), never from
    batching."""
    stage = "targets-sample" if attempt == 0 else f"targets-sample#{attempt}"
    return int(rng_for(seed, record.shard_id, record.id, stage).integers(2**31))


@dataclass(frozen=True, slots=True)
class RepairPolicy:
    """Which failed checks send an answer back to the LLM, how many times, and how the repairs sample."""

    checks: tuple[str, ...] = ()
    max_repairs: int = 0
    temperature: float = 0.0

    @classmethod
    def from_config(cls, quality: QualityConfig) -> "RepairPolicy":
        """Repair an empty answer and every check of quality.target_filters (the ones that would filter)."""
        checks = tuple(c for c in TARGET_CHECKS if c == "empty" or c in quality.target_filters)
        return cls(checks, quality.max_repairs, quality.repair_temperature)


@dataclass(slots=True)
class _Job:
    """One record's request through its attempts: the answer so far and the checks each repair was for."""

    slot: int
    request: Request
    kept: Request | None = None  # the request whose answer is ``target``
    target: Target | None = None
    attempt: int = 0
    seed: int = 0
    sampling: Sampling | None = None
    repaired: list[str] = field(default_factory=list)
    shown: set[int] = field(default_factory=set)  # pool indices of the examples earlier attempts showed
    failed: tuple[str, ...] = ()  # repairable checks the current answer fails
    error: RecordError | None = None


class TargetsStage(Stage):
    """Batch the records' requests through the LLM client, in record order, and attach the targets. An answer
    that fails ``repair.checks`` is asked again up to ``repair.max_repairs`` times (a seed of its own per attempt,
    other few-shot examples, ``repair.temperature``); the first that passes is kept. One still empty after that
    filters its record (``target_empty``); the target-checks stage after this one filters the other failures
    (``quality.target_filters``).

    The client (backend + response cache) is made in ``setup()``; ``client=`` injects one (tests), and a bare
    backend given there is put behind a cache-less CachedClient so usage is counted the same way."""

    name: ClassVar[str] = "targets"
    reads: ClassVar[tuple[str, ...]] = ("text", "next_text", "task", "description")
    writes: ClassVar[tuple[str, ...]] = ("targets", "split")  # split: MTBI held-out tasks and phrasings
    lazy_setup: ClassVar[bool] = True
    across_shards: ClassVar[bool] = True  # a worker may hand it several shards' records at once (llm.batch_shards)

    def __init__(self, config: LLMConfig, seed: int, client: LLMClient | None = None,
                 cache_path: str | Path | None = None, repair: RepairPolicy | None = None):
        self.config = config
        self.seed = seed
        self.cache_path = cache_path
        self.repair = repair or RepairPolicy()
        self.requires = BACKEND_PACKAGES[config.backend]
        check_mtbi(config.mtbi)  # an unknown task or phrasing id fails the plan check, not a worker
        self.client = client if client is None or isinstance(client, CachedClient) else CachedClient(client, None)
        self._usage: dict[int, dict[str, int]] = {}  # shard id -> counters of the last call

    def setup(self) -> None:
        """Make the client on first use, so a worker whose rows need no LLM never loads or dials one."""
        if self.client is None:
            self.client = make_client(self.config, self.cache_path)

    def take_usage(self) -> dict[str, int]:
        """The last call's counters, all its shards together."""
        total: Counter[str] = Counter()
        for counts in self._usage.values():
            total.update(counts)
        return dict(total)

    def take_usage_by_shard(self) -> dict[int, dict[str, int]]:
        """The last call's counters per shard; a shard that asked the LLM nothing has none."""
        return {shard: dict(counts) for shard, counts in self._usage.items()}

    def _request(self, record: Record, attempt: int, shown: frozenset[int] = frozenset()) -> Request | None:
        """Attempt 0 draws the question and examples from the record's RNG; a repair asks the same question
        with examples drawn from an RNG of its attempt, none of those ``shown`` before (a copied example is
        not shown again); the last repair of a description starts its answer with the speaker (``opening``)."""
        rng = rng_for(self.seed, record.shard_id, record.id, self.name)
        shot_rng = None if attempt == 0 else rng_for(self.seed, record.shard_id, record.id, f"{self.name}#{attempt}")
        last = attempt > 0 and attempt == self.repair.max_repairs and not (self.client and self.client.chat)
        return build_request(record, rng, self.config.mtbi, shot_rng, shown, lead=last)

    def __call__(self, batch: Sequence[Record]) -> list[Record]:
        out = list(batch)
        self._usage = {}
        jobs: list[_Job] = []
        for i, record in enumerate(out):
            if not record.live:
                continue
            try:
                request = self._request(record, 0)
                if request is None:
                    out[i] = dataclasses.replace(record, targets=(corpus_target(record),))
                else:
                    jobs.append(_Job(i, request))
            except RecordError as exc:
                out[i] = fail(record, self.name, exc.kind, str(exc))
        if not jobs:
            return out
        self.setup()
        self.client.take_usage()  # drop what a call that raised (ServiceUnavailable) left counted
        first = Sampling.from_config(self.config, chat=self.client.chat)
        usage: dict[int, Counter[str]] = {out[job.slot].shard_id: Counter() for job in jobs}
        self._ask(jobs, out, 0, first)
        for attempt in range(1, self.repair.max_repairs + 1):
            again = [job for job in jobs if job.error is None and job.failed]
            if not again:
                break
            for job in again:
                usage[out[job.slot].shard_id].update(f"repairs:{check}" for check in job.failed)
                job.repaired.append("+".join(job.failed))
                job.shown |= shot_indices(job.request.shots)
                try:
                    job.request = self._request(out[job.slot], attempt, frozenset(job.shown))
                except RecordError as exc:
                    job.error = exc
            again = [job for job in again if job.error is None]
            for job in again:
                usage[out[job.slot].shard_id]["repair_calls"] += 1
            self._ask(again, out, attempt, dataclasses.replace(first, temperature=self.repair.temperature))
            crash_point("targets:repair")
        for job in jobs:
            self._finish(job, out, usage[out[job.slot].shard_id])
        client_usage = self.client.take_usage_by_owner()
        self._usage = {shard: {**client_usage.get(shard, {}), **dict(sorted(counts.items()))}
                       for shard, counts in sorted(usage.items())}
        return out

    def _ask(self, jobs: list[_Job], out: list[Record], attempt: int, sampling: Sampling) -> None:
        """One answer per job for ``attempt``, in batches grouped by task (stable: record order within a task;
        a backend that plans its own generate calls gets them all at once); each answer is checked against the
        repair checks."""
        order = sorted(jobs, key=lambda j: j.request.task)
        size = max(1, len(order)) if self.client.plans_groups else self.config.batch_size
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            seeds = [record_seed(self.seed, out[j.slot], attempt) for j in chunk]
            try:
                answers = self.client.complete([Prompt(j.request.llm_prompt, j.request.chat) for j in chunk],
                                               sampling, seeds, attempt=attempt,
                                               owners=[out[j.slot].shard_id for j in chunk])
            except RecordError as exc:  # a client that failed the whole batch
                answers = [exc] * len(chunk)
            for job, answer, seed in zip(chunk, answers, seeds, strict=True):
                if not isinstance(answer, Completion):
                    job.error = answer
                    continue
                try:
                    target = parse_response(answer.text, answer.finish_reason, job.request, self.client.model_name,
                                            self.client.backend, sampling.stop)
                except ServiceUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 -- one answer that cannot be read fails its record only
                    job.error = RecordError("bad_response", f"{type(exc).__name__}: {exc}")
                    continue
                job.target, job.kept, job.attempt, job.seed, job.sampling = target, job.request, attempt, seed, sampling
                record = dataclasses.replace(out[job.slot], targets=(target,))
                failed = check_target(target, record.text, record.description, record_facts(record),
                                      shot_transcripts(job.request.shots))
                job.failed = tuple(c for c in failed if c in self.repair.checks)

    def _finish(self, job: _Job, out: list[Record], usage: Counter[str]) -> None:
        """The record with the answer its job kept (or the error of the attempt that failed before any answer)."""
        record = out[job.slot]
        if job.target is None:
            error = job.error or RecordError("no_answer", "the LLM returned no answer")
            out[job.slot] = fail(record, self.name, error.kind, str(error))
            return
        if job.repaired:
            usage["repaired" if not job.failed else "repairs_exhausted"] += 1
        request, sampling = job.kept, job.sampling
        split = request.split if request.split and record.split == "train" else record.split
        provenance = dataclasses.replace(
            record.provenance, llm_seed=job.seed, llm_attempt=job.attempt, llm_temperature=sampling.temperature,
            llm_top_p=sampling.top_p, llm_max_new_tokens=sampling.max_new_tokens, shots=request.shots or None,
            repaired=(*record.provenance.repaired, *job.repaired))
        out[job.slot] = dataclasses.replace(record, targets=(job.target,), split=split, provenance=provenance,
                                            filtered=None if job.target.response else EMPTY)
