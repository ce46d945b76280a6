"""Source stage: turn one shard's documents into records with stable ids, recording every drop."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar

from align_data.config import SegmentConfig
from align_data.schemas import ErrorInfo, Record, SourceRef
from align_data.stages.base import Stage, rng_for
from align_data.stages.source.text import dedup_key, normalize, pack_segments, split_sentences, words

_ID_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Document:
    """One input document as read by the pipeline: its source name, row number, id and raw text."""

    dataset: str
    row: int
    doc_id: str
    text: str
    problem: str | None = None  # why the raw input could not be read as a document (a broken jsonl line)


class SourceStage(Stage):
    """Normalize, split into sentences, pack into segments, filter, dedup and sample, seeded per shard."""

    name: ClassVar[str] = "source"
    writes: ClassVar[tuple[str, ...]] = ("id", "shard_id", "source", "text", "next_text", "split")

    def __init__(self, config: SegmentConfig, seed: int, heldout_fraction: float = 0.0):
        self.config = config
        self.seed = seed
        self.heldout_fraction = heldout_fraction

    def split_of(self, doc: Document) -> str:
        """'heldout' for a seeded fraction of documents (by source and document id, not by shard)."""
        if self.heldout_fraction <= 0:
            return "train"
        draw = rng_for(self.seed, -1, f"{doc.dataset}/{doc.doc_id}", "split").random()
        return "heldout" if draw < self.heldout_fraction else "train"

    def records(self, docs: list[Document], shard_id: int, held: frozenset[str] = frozenset()) -> list[Record]:
        """Every candidate segment of ``docs`` as a record: live, or filtered with a reason. ``held``: dedup keys
        that an earlier shard holds (its segments are filtered as ``cross_shard_duplicate``)."""
        out: list[Record] = []
        seen: set[str] = set()
        for doc in docs:
            out.extend(self._document(doc, shard_id, seen, held))
        return out

    def dedup_keys(self, docs: list[Document], shard_id: int) -> list[str]:
        """The dedup keys this shard holds, in order: those of its segments that reach the dedup check and are
        the first of their key in the shard (kept, or sampled out after it)."""
        if not self.config.dedup:
            return []
        return [dedup_key(r.text) for r in self.records(docs, shard_id) if r.filtered in (None, "sampled_out")
                and r.error is None]

    def _document(self, doc: Document, shard_id: int, seen: set[str], held: frozenset[str]) -> list[Record]:
        cfg = self.config
        text = normalize(doc.text if isinstance(doc.text, str) else "")
        base = f"{_ID_SAFE.sub('_', doc.dataset)}-{doc.row:09d}"
        if doc.problem is not None:
            return [Record(id=f"{base}-000", shard_id=shard_id, text=text[:cfg.max_chars],
                           source=SourceRef(doc.dataset, doc.doc_id, 0),
                           error=ErrorInfo(stage="source", kind="bad_input", message=doc.problem))]
        if "\ufffd" in text:  # bytes that were not UTF-8: the text is not what its author wrote
            return [Record(id=f"{base}-000", shard_id=shard_id, text=text[:cfg.max_chars],
                           source=SourceRef(doc.dataset, doc.doc_id, 0), filtered="bad_encoding")]
        if not words(text):
            reason = "empty" if not text else "no_words"
            return [Record(id=f"{base}-000", shard_id=shard_id, text=text[:cfg.max_chars],
                           source=SourceRef(doc.dataset, doc.doc_id, 0), filtered=reason)]
        segments = pack_segments(split_sentences(text), cfg.min_words, cfg.max_words)
        records = []
        split = self.split_of(doc)
        for index, segment in enumerate(segments):
            nxt = segments[index + 1] if index + 1 < len(segments) else None
            record = Record(id=f"{base}-{index:03d}", shard_id=shard_id, text=segment, next_text=nxt,
                            source=SourceRef(doc.dataset, doc.doc_id, index), split=split)
            records.append(dataclasses.replace(record, filtered=self._reason(record, seen, held)))
        return records

    def _reason(self, record: Record, seen: set[str], held: frozenset[str]) -> str | None:
        cfg = self.config
        n_words = len(words(record.text))
        if n_words == 0:
            return "no_words"
        if len(record.text) > cfg.max_chars:
            return "too_long"
        if n_words < cfg.min_words:
            return "too_short"
        if cfg.dedup:
            key = dedup_key(record.text)
            if key in seen:
                return "duplicate"
            seen.add(key)
            if key in held:
                return "cross_shard_duplicate"
        if cfg.sample_fraction < 1.0:
            if rng_for(self.seed, record.shard_id, record.id, self.name).random() >= cfg.sample_fraction:
                return "sampled_out"
        return None
