"""Build LLM requests from records and parse responses into targets: pure functions, easy to test."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import numpy as np

from align_data.schemas import Record, Target
from align_data.stages.base import RecordError


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request: which prompt, the instruction shown to the trainer, the LLM's input."""

    task: str
    prompt_id: str
    instruction: str
    llm_prompt: str


@lru_cache(maxsize=1)
def catalog() -> dict:
    return tomllib.loads(files("align_data.stages.targets").joinpath("prompts.toml").read_text())


def _continuation(record: Record) -> Request:
    spec = catalog()["continuation"]
    shots = "".join(f"{spec['instruction']}\nText: {s['text']}\nContinuation: {s['response']}\n\n"
                    for s in spec["shots"])
    prompt = f"{shots}{spec['instruction']}\nText: {record.text}\nContinuation:"
    return Request("continuation", spec["id"], spec["instruction"], prompt)


def _description(record: Record, rng: np.random.Generator) -> Request:
    spec = catalog()["description"]
    if not record.description:
        raise RecordError("no_description", "description task without a seed transcript")
    question = spec["questions"][int(rng.integers(len(spec["questions"])))]
    shots = "".join(f"Audio: {s['seed']}\nQuestion: {s['question']}\nAnswer: {s['answer']}\n\n"
                    for s in spec["shots"])
    prompt = f"{shots}Audio: {record.description}\nQuestion: {question['text']}\nAnswer:"
    return Request("description", question["id"], question["text"], prompt)


def build_request(record: Record, rng: np.random.Generator) -> Request | None:
    """The LLM request for a record, or None when the target needs no LLM (interleaved)."""
    if record.task == "continuation":
        return _continuation(record)
    if record.task == "description":
        return _description(record, rng)
    if record.task == "interleaved":
        return None
    raise RecordError("unknown_task", f"no prompt for task {record.task!r}")


def corpus_target(record: Record) -> Target:
    """InSerter target: the corpus text that follows the segment, no LLM involved."""
    if not record.next_text:
        raise RecordError("no_next_text", "interleaved record without following text")
    spec = catalog()["interleaved"]
    return Target(task="interleaved", prompt_id=spec["id"], prompt=spec["instruction"],
                  response=record.next_text, model="corpus", backend="corpus", finish_reason="corpus")


def parse_response(raw: str, finish_reason: str, request: Request, model: str, backend: str) -> Target:
    """The first line of the raw completion as a target; an empty answer is a record error."""
    text = raw.split("\n", 1)[0].strip()
    if not text:
        raise RecordError("empty_response", f"the LLM answered nothing for {request.prompt_id}")
    return Target(task=request.task, prompt_id=request.prompt_id, prompt=request.instruction,
                  response=text, model=model, backend=backend, finish_reason=finish_reason)
