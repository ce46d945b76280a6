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
from align_data.stages.quality.faithfulness import ClipFacts, facts_from_seed, recording_state


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
    shots: str = ""  # ids of the few-shot examples shown ("description:3,description:11"), for provenance
    lead: str = ""  # the answer's first words, written into the completion prompt (the model goes on from them)


SHOTS = {"continuation": 2, "description": 3, "mtbi": 2}  # examples shown per prompt, drawn from each pool


def chat_turns(shots: list[tuple[str, str]], question: str) -> tuple[tuple[str, str], ...]:
    """Few-shot examples as alternating user/assistant turns, then the question."""
    turns = [turn for ask, answer in shots for turn in (("user", ask), ("assistant", answer))]
    return (*turns, ("user", question))


@lru_cache(maxsize=1)
def catalog() -> dict:
    return tomllib.loads(files("align_data.stages.targets").joinpath("prompts.toml").read_text())


def draw_shots(pool: list[dict], k: int, rng: np.random.Generator, weights: np.ndarray | None = None,
               exclude: frozenset[int] = frozenset()) -> list[int]:
    """``k`` distinct pool indices drawn from ``rng`` (by ``weights`` when given), so no fixed pair of examples
    is shown to every record and a base model has no one phrasing to copy. ``exclude``: indices not to draw (the
    examples an earlier attempt showed), while at least ``k`` others remain."""
    k = min(k, len(pool))
    w = np.ones(len(pool)) if weights is None else np.asarray(weights, dtype=float).copy()
    if len(pool) - len(exclude) >= k:
        w[list(exclude)] = 0.0
    return [int(i) for i in rng.choice(len(pool), size=k, replace=False, p=w / w.sum())]


def _shot_ids(task: str, picked: list[int]) -> str:
    return ",".join(f"{task}:{i}" for i in picked)


def _parse_shot_ids(ids: str) -> list[tuple[str, int]]:
    """(task, pool index) of each shot named in ``ids`` ("description:3,description:9"), in order."""
    return [(task, int(index)) for task, _, index in (item.rpartition(":") for item in filter(None, ids.split(",")))
            if index.isdigit()]


def shot_indices(ids: str) -> frozenset[int]:
    """The pool indices named in a request's ``shots`` ("description:3,description:9" -> {3, 9})."""
    return frozenset(index for _, index in _parse_shot_ids(ids))


def _continuation(record: Record, shot_rng: np.random.Generator, exclude: frozenset[int]) -> Request:
    spec = catalog()["continuation"]
    picked = draw_shots(spec["shots"], SHOTS["continuation"], shot_rng, exclude=exclude)
    chosen = [spec["shots"][i] for i in picked]
    shots = "".join(f"{spec['instruction']}\nText: {s['text']}\nContinuation: {s['response']}\n\n" for s in chosen)
    prompt = f"{shots}{spec['instruction']}\nText: {record.text}\nContinuation:"
    chat = chat_turns([(f"{spec['instruction']}\n\n{s['text']}", s["response"]) for s in chosen],
                      f"{spec['instruction']}\n\n{record.text}")
    return Request("continuation", spec["id"], spec["instruction"], prompt, chat=chat,
                   shots=_shot_ids("continuation", picked))


# How much a description shot's agreement with the clip raises its chance to be shown, per attribute: a base
# model copies the attributes of its examples, so examples that share the clip's are the ones to show. On the
# demo's 45 description records (Gemma 3 270M), these weights let 23 first answers pass the checks where weights
# 8× smaller let 15, and still drew 31 of the pool's 34 examples over the demo's 179 clips.
AGREEMENT_WEIGHT = {"gender": 24.0, "accent": 32.0, "pitch": 16.0, "speed": 16.0, "volume": 16.0, "noise": 16.0,
                    "reverb": 16.0}


def _profile(facts: ClipFacts) -> dict[str, str | None]:
    """The attributes a shot and a clip are compared on (noise and reverb by the faithfulness thresholds)."""
    return {"gender": facts.gender, "accent": (facts.accent or "").lower() or None, "pitch": facts.pitch,
            "speed": facts.speed, "volume": facts.volume, "noise": recording_state("noise", facts),
            "reverb": recording_state("reverb", facts)}


@lru_cache(maxsize=1)
def _description_profiles() -> tuple[dict[str, str | None], ...]:
    return tuple(_profile(facts_from_seed(s["seed"])[0]) for s in catalog()["description"]["shots"])


def description_weights(record: Record) -> np.ndarray:
    """Each description shot's draw weight: the product of AGREEMENT_WEIGHT over the attributes it shares with
    the record's clip (1 for a shot that shares none)."""
    from align_data.stages.quality.checks import record_facts

    clip = _profile(record_facts(record))
    weights = [np.prod([AGREEMENT_WEIGHT[a] for a, v in shot.items() if v is not None and v == clip[a]] or [1.0])
               for shot in _description_profiles()]
    return np.asarray(weights, dtype=float)


def opening(record: Record, rng: np.random.Generator) -> str:
    """The first words of a description that name the clip's speaker and accent, from the catalog's openings;
    '' when the gender or accent is not known."""
    voice = record.voice
    if voice is None or voice.gender not in ("female", "male") or not voice.accent or voice.accent == "unknown":
        return ""
    forms = catalog()["description"]["openings"]
    form = forms[int(rng.integers(len(forms)))]
    article = "an" if voice.accent[:1].lower() in "aeiou" else "a"
    return form.format(who="woman" if voice.gender == "female" else "man", a=article, accent=voice.accent)


def _description(record: Record, rng: np.random.Generator, shot_rng: np.random.Generator,
                 exclude: frozenset[int], lead: bool = False) -> Request:
    spec = catalog()["description"]
    if not record.description:
        raise RecordError("no_description", "description task without a seed transcript")
    question = spec["questions"][int(rng.integers(len(spec["questions"])))]
    weights = description_weights(record)
    picked = draw_shots(spec["shots"], SHOTS["description"], shot_rng, weights, exclude)
    picked.sort(key=lambda i: weights[i])  # stable: the best-matching example stands next to the question
    chosen = [spec["shots"][i] for i in picked]
    shots = "".join(f"Audio: {s['seed']}\nQuestion: {s['question']}\nAnswer: {s['answer']}\n\n" for s in chosen)
    first = opening(record, shot_rng) if lead else ""
    prompt = f"{shots}Audio: {record.description}\nQuestion: {question['text']}\nAnswer:" + (f" {first}" if first else "")
    chat = chat_turns([(f"Audio: {s['seed']}\n\n{s['question']}", s["answer"]) for s in chosen],
                      f"Audio: {record.description}\n\n{question['text']}")
    return Request("description", question["id"], question["text"], prompt, chat=chat,
                   shots=_shot_ids("description", picked), lead=first)


def shot_transcripts(ids: str) -> tuple[str, ...]:
    """The quoted texts of the description shots named in ``ids`` ("description:3,description:9"); other ids
    (continuation, MTBI) and ids the catalog no longer has are skipped."""
    pool = catalog()["description"]["shots"]
    return tuple(facts_from_seed(pool[index]["seed"])[1] for task, index in _parse_shot_ids(ids)
                 if task == "description" and index < len(pool))


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


def _mtbi(record: Record, rng: np.random.Generator, config: MTBIConfig, shot_rng: np.random.Generator,
          exclude: frozenset[int]) -> Request:
    """One task, one phrasing and the task's shots, drawn per record. The shots show the task's first phrasing
    (the drawn one comes with the record's own text)."""
    catalog = mtbi_catalog()
    names = config.tasks or list(catalog)
    task = catalog[names[int(rng.integers(len(names)))]]
    phrasing = task["prompts"][int(rng.integers(len(task["prompts"])))]
    shown = task["prompts"][0]["text"]
    picked = draw_shots(task["shots"], SHOTS["mtbi"], shot_rng, exclude=exclude)
    chosen = [task["shots"][i] for i in picked]
    shots = "".join(f"Text: {s['text']}\n{shown}\nAnswer: {s['response']}\n\n" for s in chosen)
    prompt = f"{shots}Text: {record.text}\n{phrasing['text']}\nAnswer:"
    chat = chat_turns([(f"Text: {s['text']}\n\n{shown}", s["response"]) for s in chosen],
                      f"Text: {record.text}\n\n{phrasing['text']}")
    split = ("heldout_task" if task["id"] in config.heldout_tasks
             else "heldout_prompt" if phrasing["id"] in config.heldout_prompts else None)
    return Request(task["id"], phrasing["id"], phrasing["text"], prompt, split, chat,
                   shots=_shot_ids(task["id"], picked))


def build_request(record: Record, rng: np.random.Generator, mtbi: MTBIConfig | None = None,
                  shot_rng: np.random.Generator | None = None, exclude: frozenset[int] = frozenset(),
                  lead: bool = False) -> Request | None:
    """The LLM request for a record, or None when the target needs no LLM (interleaved). ``rng`` draws what is
    asked (the question, the MTBI task and phrasing); ``shot_rng`` (default: ``rng``) the few-shot examples, so a
    repair asks the same question with other examples; ``exclude``: pool indices of examples not to show again;
    ``lead``: a description's answer starts with words that name the speaker (``opening``; completion prompts
    only: a chat prompt has no place for them)."""
    shot_rng = rng if shot_rng is None else shot_rng
    if record.task == "continuation":
        return _continuation(record, shot_rng, exclude)
    if record.task == "description":
        return _description(record, rng, shot_rng, exclude, lead)
    if record.task == "mtbi":
        return _mtbi(record, rng, mtbi or MTBIConfig(), shot_rng, exclude)
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
    """The cleaned raw answer (after the request's ``lead``, which it continues) as a target. An empty one is
    returned as is: the targets stage filters it."""
    text = clean_response(raw, stop)
    if request.lead and text:
        text = request.lead + ("" if text[:1] in ",.;:" else " ") + text
    return Target(task=request.task, prompt_id=request.prompt_id, prompt=request.instruction,
                  response=text, model=model, backend=backend, finish_reason=finish_reason)
