"""Build LLM requests from records and parse responses into targets: pure functions, easy to test."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import numpy as np

from align_data.config import MTBIConfig
from align_data.errors import AlignDataError
from align_data.schemas import Record, Target
from align_data.stages.base import RecordError


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request: which prompt, the instruction shown to the trainer, the LLM's input, and the
    split its row moves to when the task or phrasing is held out."""

    task: str
    prompt_id: str
    instruction: str
    llm_prompt: str
    split: str | None = None
    chat: tuple[tuple[str, str], ...] = ()  # the same shots and question as chat turns (instruct models)


def chat_turns(shots: list[tuple[str, str]], question: str) -> tuple[tuple[str, str], ...]:
    """Few-shot examples as alternating user/assistant turns, then the question."""
    turns = [turn for ask, answer in shots for turn in (("user", ask), ("assistant", answer))]
    return (*turns, ("user", question))


@lru_cache(maxsize=1)
def catalog() -> dict:
    return tomllib.loads(files("align_data.stages.targets").joinpath("prompts.toml").read_text())


def _continuation(record: Record) -> Request:
    spec = catalog()["continuation"]
    shots = "".join(f"{spec['instruction']}\nText: {s['text']}\nContinuation: {s['response']}\n\n"
                    for s in spec["shots"])
    prompt = f"{shots}{spec['instruction']}\nText: {record.text}\nContinuation:"
    chat = chat_turns([(f"{spec['instruction']}\n\n{s['text']}", s["response"]) for s in spec["shots"]],
                      f"{spec['instruction']}\n\n{record.text}")
    return Request("continuation", spec["id"], spec["instruction"], prompt, chat=chat)


def _description(record: Record, rng: np.random.Generator) -> Request:
    spec = catalog()["description"]
    if not record.description:
        raise RecordError("no_description", "description task without a seed transcript")
    question = spec["questions"][int(rng.integers(len(spec["questions"])))]
    shots = "".join(f"Audio: {s['seed']}\nQuestion: {s['question']}\nAnswer: {s['answer']}\n\n"
                    for s in spec["shots"])
    prompt = f"{shots}Audio: {record.description}\nQuestion: {question['text']}\nAnswer:"
    chat = chat_turns([(f"Audio: {s['seed']}\n\n{s['question']}", s["answer"]) for s in spec["shots"]],
                      f"Audio: {record.description}\n\n{question['text']}")
    return Request("description", question["id"], question["text"], prompt, chat=chat)


@lru_cache(maxsize=1)
def mtbi_catalog() -> dict[str, dict]:
    """The MTBI tasks by id, in file order: each with ``prompts`` (id, text) and few-shot ``shots``."""
    data = tomllib.loads(files("align_data.stages.targets").joinpath("mtbi.toml").read_text())
    return {task["id"]: task for task in data["tasks"]}


def check_mtbi(config: MTBIConfig) -> None:
    """Every task and phrasing id the config names exists in the catalog."""
    catalog = mtbi_catalog()
    prompt_ids = {p["id"] for task in catalog.values() for p in task["prompts"]}
    for key, ids, known in (("tasks", config.tasks, catalog), ("heldout_tasks", config.heldout_tasks, catalog),
                            ("heldout_prompts", config.heldout_prompts, prompt_ids)):
        unknown = sorted(set(ids) - set(known))
        if unknown:
            raise AlignDataError(f"llm.mtbi.{key}: unknown id(s) {', '.join(unknown)}; the catalog has "
                                 f"{', '.join(sorted(known))}")


def _mtbi(record: Record, rng: np.random.Generator, config: MTBIConfig) -> Request:
    """One task, one phrasing, drawn per record. The shots show the task's first phrasing, so every phrasing of
    a task shares the few-shot prefix (one cached prefix per task on the transformers backend)."""
    catalog = mtbi_catalog()
    names = config.tasks or list(catalog)
    task = catalog[names[int(rng.integers(len(names)))]]
    phrasing = task["prompts"][int(rng.integers(len(task["prompts"])))]
    shown = task["prompts"][0]["text"]
    shots = "".join(f"Text: {s['text']}\n{shown}\nAnswer: {s['response']}\n\n" for s in task["shots"])
    prompt = f"{shots}Text: {record.text}\n{phrasing['text']}\nAnswer:"
    chat = chat_turns([(f"Text: {s['text']}\n\n{shown}", s["response"]) for s in task["shots"]],
                      f"Text: {record.text}\n\n{phrasing['text']}")
    split = ("heldout_task" if task["id"] in config.heldout_tasks
             else "heldout_prompt" if phrasing["id"] in config.heldout_prompts else None)
    return Request(task["id"], phrasing["id"], phrasing["text"], prompt, split, chat)


def build_request(record: Record, rng: np.random.Generator, mtbi: MTBIConfig | None = None) -> Request | None:
    """The LLM request for a record, or None when the target needs no LLM (interleaved)."""
    if record.task == "continuation":
        return _continuation(record)
    if record.task == "description":
        return _description(record, rng)
    if record.task == "mtbi":
        return _mtbi(record, rng, mtbi or MTBIConfig())
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


def clean_response(raw: str, stop: tuple[str, ...] = ("\n",)) -> str:
    """The answer up to its first stop string (a newline after few-shot completion prompts, a blank line after
    chat prompts; a server may ignore ``stop``), stripped."""
    text = raw.strip()
    for marker in stop:
        text = text.split(marker, 1)[0]
    return text.strip()


def parse_response(raw: str, finish_reason: str, request: Request, model: str, backend: str,
                   stop: tuple[str, ...] = ("\n",)) -> Target:
    """The cleaned raw answer as a target. An empty one is returned as is: the targets stage filters it."""
    text = clean_response(raw, stop)
    return Target(task=request.task, prompt_id=request.prompt_id, prompt=request.instruction,
                  response=text, model=model, backend=backend, finish_reason=finish_reason)
