"""MTBI multi-task prompts: the catalog, one task and phrasing per record, held-out tasks and phrasings."""

from collections import Counter

import numpy as np
import pytest

from align_data.config import LLMConfig, MTBIConfig
from align_data.errors import AlignDataError
from align_data.schemas import Record, SourceRef
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.client import Completion
from align_data.stages.targets.prompts import build_request, mtbi_catalog


def _record(rid: str, split: str = "train") -> Record:
    return Record(id=rid, shard_id=0, source=SourceRef("t", "d", 0), text="The ferry left the island at dawn.",
                  task="mtbi", split=split)


def test_catalog_has_eight_tasks_of_five_phrasings_with_unique_ids():
    catalog = mtbi_catalog()
    assert {"continue", "summarize", "paraphrase", "keywords", "sentiment", "question", "answer",
            "translate"} <= set(catalog)
    ids = [p["id"] for task in catalog.values() for p in task["prompts"]]
    assert len(ids) == len(set(ids))
    for task in catalog.values():
        assert len(task["prompts"]) >= 5 and len(task["shots"]) >= 5
        assert all(p["id"].startswith(task["id"] + "-") and p["text"].strip() for p in task["prompts"])
        assert all("\n" not in s["response"] for s in task["shots"])  # answers stop at a newline


def test_request_asks_one_task_in_one_phrasing_after_shots_of_that_task():
    req = build_request(_record("a"), np.random.default_rng(3))
    task = mtbi_catalog()[req.task]
    assert req.prompt_id in {p["id"] for p in task["prompts"]}
    assert req.llm_prompt.endswith(f"Text: The ferry left the island at dawn.\n{req.instruction}\nAnswer:")
    assert req.split is None
    shown = [int(i.split(":")[1]) for i in req.shots.split(",")]
    assert req.shots.startswith(f"{req.task}:") and len(shown) == 2
    for i in shown:  # each drawn shot of the task's pool, asked in the task's first phrasing
        shot = task["shots"][i]
        assert f"Text: {shot['text']}\n{task['prompts'][0]['text']}\nAnswer: {shot['response']}" in req.llm_prompt


def test_draws_cover_every_task_and_nearly_every_phrasing():
    reqs = [build_request(_record(f"r{i}"), np.random.default_rng(i)) for i in range(600)]
    catalog = mtbi_catalog()
    assert set(Counter(r.task for r in reqs)) == set(catalog)
    assert len({r.prompt_id for r in reqs}) == sum(len(t["prompts"]) for t in catalog.values())


def test_held_out_tasks_and_phrasings_tag_the_rows_split():
    mtbi = MTBIConfig(heldout_tasks=["translate"], heldout_prompts=["summarize-2", "keywords-5"])
    reqs = [build_request(_record(f"r{i}"), np.random.default_rng(i), mtbi) for i in range(400)]
    for r in reqs:
        expected = ("heldout_task" if r.task == "translate"
                    else "heldout_prompt" if r.prompt_id in ("summarize-2", "keywords-5") else None)
        assert r.split == expected
    assert {r.split for r in reqs} == {None, "heldout_task", "heldout_prompt"}
    only = [build_request(_record(f"r{i}"), np.random.default_rng(i), MTBIConfig(tasks=["sentiment"]))
            for i in range(20)]
    assert {r.task for r in only} == {"sentiment"}


def test_unknown_ids_fail_when_the_stage_is_built():
    with pytest.raises(AlignDataError, match="heldout_prompts: unknown id.*summarize-9"):
        TargetsStage(LLMConfig(mtbi=MTBIConfig(heldout_prompts=["summarize-9"])), seed=0)
    with pytest.raises(AlignDataError, match="llm.mtbi.tasks: unknown id.*poetry"):
        TargetsStage(LLMConfig(mtbi=MTBIConfig(tasks=["poetry"])), seed=0)


class EchoTask:
    """Fault injection only: a client that answers without a model."""

    model_name = backend = "scripted"

    def complete(self, prompts, sampling, seeds):
        return [Completion("an answer", "stop") for _ in prompts]


def test_stage_attaches_task_and_prompt_id_and_moves_held_out_rows():
    config = LLMConfig(mtbi=MTBIConfig(heldout_tasks=["translate", "question"]))
    records = [_record(f"r{i}") for i in range(40)] + [_record("doc-heldout", split="heldout")]
    out = TargetsStage(config, seed=0, client=EchoTask())(records)
    tasks = {r.targets[0].task for r in out}
    assert len(tasks) >= 6
    for r in out:
        (target,) = r.targets
        assert target.prompt_id.startswith(target.task + "-") and target.prompt == next(
            p["text"] for p in mtbi_catalog()[target.task]["prompts"] if p["id"] == target.prompt_id)
        if r.id == "doc-heldout":
            assert r.split == "heldout"  # a held-out document stays held out
        else:
            assert r.split == ("heldout_task" if target.task in ("translate", "question") else "train")
