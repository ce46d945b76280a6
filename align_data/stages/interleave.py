"""Interleave stage: assign each segment a task and choose which words are spoken (InSerter spans)."""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar

import numpy as np

from align_data.config import InterleaveConfig
from align_data.schemas import Record, Segment
from align_data.stages.base import Stage, rng_for

_TOKEN = re.compile(r"\S+")


def choose_task(weights: dict[str, float], has_next: bool, rng: np.random.Generator) -> str | None:
    """A task drawn by weight; 'interleaved' needs the following corpus text as its target.
    None when no configured task fits (an interleaved-only build at the end of a document)."""
    names = sorted(k for k, w in weights.items() if w > 0 and (has_next or k != "interleaved"))
    if not names:
        return None
    p = np.array([weights.get(k, 1.0) for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def speech_spans(n_words: int, cfg: InterleaveConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Word-index spans [start, end) to speak, alternating with text spans, about ``speech_ratio`` spoken."""
    lo, hi = cfg.min_span_words, max(cfg.min_span_words, cfg.max_span_words)
    if n_words <= lo:
        return [(0, n_words)]
    mean_speech = (lo + hi) / 2
    mean_text = max(1.0, mean_speech * (1 - cfg.speech_ratio) / cfg.speech_ratio)
    spans: list[tuple[int, int]] = []
    pos = 0 if rng.random() < 0.5 else int(rng.integers(1, max(2, round(mean_text)) + 1))
    while pos < n_words:
        length = int(rng.integers(lo, hi + 1))
        end = min(n_words, pos + length)
        if end - pos >= lo or not spans:
            spans.append((pos, end))
        pos = end + max(1, int(round(rng.exponential(mean_text))))
    if spans == [(0, n_words)] and n_words > lo:  # keep at least one word as text
        spans = [(0, n_words - 1)]
    return spans


def to_segments(text: str, spans: list[tuple[int, int]]) -> tuple[Segment, ...]:
    """Cover ``text`` with alternating text/speech segments at word boundaries, with char offsets."""
    tokens = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
    out: list[Segment] = []
    audio_index = 0
    cursor = 0
    for start, end in spans:
        if start > cursor:
            a, b = tokens[cursor][0], tokens[start - 1][1]
            out.append(Segment("text", text[a:b], a, b))
        a, b = tokens[start][0], tokens[end - 1][1]
        out.append(Segment("speech", text[a:b], a, b, audio_index))
        audio_index += 1
        cursor = end
    if cursor < len(tokens):
        a, b = tokens[cursor][0], tokens[-1][1]
        out.append(Segment("text", text[a:b], a, b))
    return tuple(out)


class InterleaveStage(Stage):
    """Draw a task per record; continuation/description rows are spoken whole, interleaved ones in spans."""

    name: ClassVar[str] = "interleave"
    reads: ClassVar[tuple[str, ...]] = ("text", "next_text")
    writes: ClassVar[tuple[str, ...]] = ("task", "segments")
    # filters "no_next_text": interleaved is the only task with weight and the document has ended

    def __init__(self, config: InterleaveConfig, seed: int):
        self.config = config
        self.seed = seed

    def process(self, record: Record) -> Record:
        rng = rng_for(self.seed, record.shard_id, record.id, self.name)
        task = choose_task(self.config.task_weights, bool(record.next_text), rng)
        if task is None:
            return dataclasses.replace(record, filtered="no_next_text")
        n_words = len(record.text.split())
        if task == "interleaved":
            segments = to_segments(record.text, speech_spans(n_words, self.config, rng))
        else:
            segments = to_segments(record.text, [(0, n_words)])
        return dataclasses.replace(record, task=task, segments=segments)
