"""Text normalization, sentence splitting and packing sentences into word-bounded segments."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\u2028\u2029\ufeff]")
# a sentence ends at . ! ? (or …), optional closing quotes/brackets, then whitespace
_BOUNDARY = re.compile(r"([.!?\u2026]+[\"'\u201d\u2019)\]]*)\s+")
_WORD = re.compile(r"\w", re.UNICODE)


@lru_cache(maxsize=1)
def abbreviations() -> frozenset[str]:
    text = files("align_data.stages.source").joinpath("abbreviations.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def normalize(text: str) -> str:
    """NFKC, control characters removed, whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", text)
    return _SPACE.sub(" ", text).strip()


def words(text: str) -> list[str]:
    """Whitespace tokens that contain at least one letter or digit."""
    return [w for w in text.split() if _WORD.search(w)]


def dedup_key(text: str) -> str:
    """Hash of the lowercased letters and digits only, so case/punctuation variants collide."""
    core = "".join(ch for ch in text.lower() if ch.isalnum())
    return hashlib.blake2b(core.encode(), digest_size=12).hexdigest()


def _ends_abbreviation(chunk: str) -> bool:
    last = chunk.rsplit(" ", 1)[-1].rstrip(".").lower()
    if not last:
        return False
    if len(last) == 1 and last.isalpha():  # an initial: "J. Smith"
        return True
    return last in abbreviations()


def split_sentences(text: str) -> list[str]:
    """Split normalized text into sentences, not at abbreviations, initials or decimal points."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end(1)
        candidate = text[start:end]
        nxt = text[match.end(): match.end() + 1]
        if match.group(1).startswith(".") and _ends_abbreviation(candidate):
            continue
        if nxt and nxt.islower():  # "e.g. apples" or a lowercase continuation
            continue
        sentences.append(candidate.strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _split_long(sentence: str, max_words: int) -> list[str]:
    tokens = sentence.split()
    return [" ".join(tokens[i:i + max_words]) for i in range(0, len(tokens), max_words)]


def pack_segments(sentences: list[str], min_words: int, max_words: int) -> list[str]:
    """Greedily join sentences into segments of at most ``max_words`` words (a short tail joins the
    previous segment); sentences longer than ``max_words`` are cut at word boundaries."""
    pieces: list[str] = []
    for sentence in sentences:
        if len(sentence.split()) > max_words:
            pieces.extend(_split_long(sentence, max_words))
        else:
            pieces.append(sentence)
    segments: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > max_words:
            segments.append(" ".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        tail = " ".join(current)
        if segments and count < min_words:
            segments[-1] = segments[-1] + " " + tail
        else:
            segments.append(tail)
    return segments
