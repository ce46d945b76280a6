"""Checks of one training target: pure functions shared by the target-checks stage and ``align-data report``.

- ``empty``: the response has no word characters.
- ``echo``: the response repeats its input: fewer than 2 of its words lie outside every word 3-gram it shares
  with the input (the record's text, the instruction it was asked, or for descriptions the seed transcript the
  LLM was shown). Responses of fewer than 3 words echo only when they equal the input.
- ``over_length``: generation stopped at ``llm.max_new_tokens`` (finish_reason ``length``), so the target is cut.
- ``non_english``: English was asked (the prompt names no other language) and the response is not English:
  over 30 % of its letters are outside ASCII, or it has 5+ words, is not a comma-separated list of short items
  (keywords), and under 20 % of its words are common English words (``english_words.txt``).
- ``repeated_ngrams``: some word 3-gram occurs 3 or more times in the response (a generation loop).
- ``unfaithful``: a description that says something about the speaker or the recording that the clip's known
  attributes contradict (``faithfulness.py``: a wrong gender, accent, level word, noise, echo, duration, emotion),
  or that repeats words of a shown few-shot example's quoted text which the clip's words lack (``content``: a
  word 3-gram with two content words, or one content word of 4+ letters).
Words are those of the WER normalization (lowercase, numbers as words, no punctuation).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from importlib.resources import files

from align_data.schemas import Record, Target
from align_data.stages.quality.faithfulness import ATTRIBUTES, ClipFacts, Contradiction, contradictions, facts_from_row
from align_data.stages.quality.faithfulness import config as faithfulness_config
from align_data.stages.quality.normalize import normalize_words

TARGET_CHECKS = ("empty", "echo", "over_length", "non_english", "repeated_ngrams", "unfaithful")
# A prompt that names a language (or asks to translate) does not ask for English.
_OTHER_LANGUAGE = re.compile(r"translat|french|spanish|german|italian|portuguese|chinese|japanese|korean|"
                             r"russian|arabic|hindi|dutch", re.IGNORECASE)


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    text = files("align_data.stages.quality").joinpath("english_words.txt").read_text(encoding="utf-8")
    return frozenset(w for line in text.splitlines() if not line.startswith("#") for w in line.split())


def _trigrams(words: list[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + 3]) for i in range(len(words) - 2)]


def is_echo(response: list[str], source: list[str]) -> bool:
    """Whether the response words only repeat the source words (see the module docstring)."""
    if not response:
        return False
    if len(response) < 3:
        return response == source
    shared = set(_trigrams(source))
    covered = [False] * len(response)
    for i, gram in enumerate(_trigrams(response)):
        if gram in shared:
            covered[i] = covered[i + 1] = covered[i + 2] = True
    return covered.count(False) < 2


def is_non_english(text: str, words: list[str]) -> bool:
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 6 and sum(not c.isascii() for c in letters) > 0.3 * len(letters):
        return True
    if len(words) < 5 or _is_list(text):
        return False
    common = english_words()
    return sum(w in common for w in words) < 0.2 * len(words)


def _is_list(text: str) -> bool:
    """A comma-separated list of short items (keywords): no sentence to judge by its function words."""
    items = [item.split() for item in re.split(r"[,;\n]", text) if item.strip()]
    return len(items) >= 3 and all(len(item) <= 3 for item in items)


def has_repeated_ngrams(words: list[str]) -> bool:
    counts = Counter(_trigrams(words))
    return bool(counts) and max(counts.values()) >= 3


def english_asked(target: Target) -> bool:
    return _OTHER_LANGUAGE.search(target.prompt) is None and not target.prompt_id.startswith("translate")


# what ``unfaithful`` reports on: the clip's attributes, and "content" (words of a shown example, not of the clip)
UNFAITHFUL_ATTRIBUTES = (*ATTRIBUTES, "content")


@lru_cache(maxsize=1)
def _function_words() -> frozenset[str]:
    return frozenset(faithfulness_config()["content"]["function_words"])


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 4 and word.endswith("s") else word


def copied_content(response: str, text: str, shown: Sequence[str]) -> Contradiction | None:
    """Words of a shown example's quoted text that ``response`` repeats and the clip's own ``text`` lacks: a word
    3-gram with two or more content words, or one long content word (faithfulness.toml ``[content]``). The answer
    then tells what another clip said."""
    function = _function_words()
    words, own_words = normalize_words(response), normalize_words(text)
    own, own_stems = set(_trigrams(own_words)), {_stem(w) for w in own_words}
    grams = [g for g in _trigrams(words) if g not in own and sum(w not in function for w in g) >= 2]
    shortest = faithfulness_config()["content"]["min_word_letters"]
    loose = [w for w in words if len(w) >= shortest and w not in function and _stem(w) not in own_stems]
    for example in shown:
        theirs_words = normalize_words(example)
        theirs, theirs_stems = set(_trigrams(theirs_words)), {_stem(w) for w in theirs_words}
        copied = next((" ".join(g) for g in grams if g in theirs), None)
        copied = copied or next((w for w in loose if _stem(w) in theirs_stems), None)
        if copied is not None:
            return Contradiction("content", copied, "words of a few-shot example, not of the clip")
    return None


def unfaithful(target: Target, text: str, facts: ClipFacts | None,
               shown: Sequence[str] = ()) -> tuple[Contradiction, ...]:
    """What a description target says that its clip contradicts (nothing for other tasks or unknown facts);
    ``shown``: the quoted texts of the few-shot examples its prompt showed (content copied from them counts)."""
    if target.task != "description" or facts is None:
        return ()
    found = contradictions(target.response, facts, text)
    copied = copied_content(target.response, text, shown)
    return found if copied is None else (*found, copied)


def check_target(target: Target, text: str, description: str | None,
                 facts: ClipFacts | None = None, shown: Sequence[str] = ()) -> tuple[str, ...]:
    """The names of the checks that ``target`` fails, in TARGET_CHECKS order. ``text`` is what the clip says;
    ``facts`` its attributes (without them ``unfaithful`` is not checked); ``shown`` the quoted texts of the
    few-shot examples its prompt showed."""
    words = normalize_words(target.response)
    failed = []
    if not words:
        failed.append("empty")
    sources = [normalize_words(text), normalize_words(target.prompt)]
    if target.task == "description" and description:
        sources.append(normalize_words(description))
    if any(is_echo(words, source) for source in sources):
        failed.append("echo")
    if target.finish_reason == "length":
        failed.append("over_length")
    if english_asked(target) and is_non_english(target.response, words):
        failed.append("non_english")
    if has_repeated_ngrams(words):
        failed.append("repeated_ngrams")
    if unfaithful(target, text, facts, shown):
        failed.append("unfaithful")
    return tuple(failed)


def row_facts(row: dict) -> ClipFacts:
    """The clip attributes of a Parquet row (``voice`` and ``paralinguistics`` as dicts)."""
    return facts_from_row(row.get("voice"), row.get("paralinguistics"))


def record_facts(record: Record) -> ClipFacts:
    """The clip attributes of a record."""
    voice = None if record.voice is None else {f: getattr(record.voice, f) for f in record.voice.__slots__}
    para = (None if record.paralinguistics is None
            else {f: getattr(record.paralinguistics, f) for f in record.paralinguistics.__slots__})
    return facts_from_row(voice, para)


def shown_texts(shots: str | None) -> tuple[str, ...]:
    """The quoted texts of the description examples named in a row's ``provenance.shots``."""
    from align_data.stages.targets.prompts import shot_transcripts

    return shot_transcripts(shots or "")


def check_record(record: Record) -> tuple[str, ...]:
    """The checks that any of the record's targets fails."""
    failed: set[str] = set()
    facts = record_facts(record)
    shown = shown_texts(record.provenance.shots)
    for target in record.targets:
        failed.update(check_target(target, record.text, record.description, facts, shown))
    return tuple(c for c in TARGET_CHECKS if c in failed)
