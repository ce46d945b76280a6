"""Faithfulness of DeSTA2-style descriptions: statements of an answer that a clip's known attributes contradict.

The answer is read lowercase, hyphens as spaces, quoted spans removed, with the word lists of faithfulness.toml.
Per attribute, cues (regexes) find statements; of overlapping ones the longest wins ("no background noise" is
clean, not noisy; "low voice" is pitch). A statement is dropped after a negator ("not too fast"; "neither fast nor
slow" is normal) or when it is transcript content, what the clip says rather than how:

- gender: "the speaker is a woman", "female voice", "spoken by a man" always count; "a woman says", "she talks",
  "her voice" unless the transcript has the phrase, or has the gender word and the phrase is in reported speech
  (after "says ..." in its sentence); other gender words unless the transcript has them or they are reported;
- levels, accents: unless the transcript has the whole phrase ("quickly", "fast pace"); level adjectives ("fast")
  count only by a speech noun ("fast pace"), in "the pace is fast" or after a speech verb ("speaks fast");
- language, emotion: unless the transcript has the name or emotion word; noise, reverb: unless it shares a
  content word; duration: unless it states the same length.

Unknown facts never contradict; one contradiction is reported per attribute, the first in the answer.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

ATTRIBUTES = ("gender", "accent", "language", "pitch", "speed", "volume", "noise", "reverb", "duration", "emotion")
LEVELS = ("low", "normal", "high")
_B, _E = r"(?<![a-z0-9])", r"(?![a-z0-9])"
_GAP2 = r"(?:[a-z]+\s+){0,2}?"
_SEEMS = r"(?:is|was|sounds\s+like|seems\s+to\s+be|appears\s+to\s+be)"
_HYPHENS = str.maketrans({c: " " for c in "-\u2010\u2011\u2012\u2013"} | {"\u2019": "'", "\u2018": "'",
                                                                          "\u201c": '"', "\u201d": '"'})
_QUOTED = re.compile(r"\"[^\"]*\"|(?<![a-z0-9])'[^'\n]+'(?![a-z0-9])")
_SEED_TEXT = re.compile(r'"(?P<text>.*)"', re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# noise / reverb: fact field, toml thresholds (clean at or above, dirty below), state names, no-value text, label
_RECORDING = {"noise": ("snr_db", "clean_min_snr_db", "noisy_max_snr_db", "clean", "noisy", "no noise", "SNR"),
              "reverb": ("c50_db", "dry_min_c50_db", "reverberant_max_c50_db", "dry", "reverberant",
                         "no reverberation", "C50")}


@dataclass(frozen=True, slots=True)
class ClipFacts:
    """What is known about a clip; None = unknown (never contradicted)."""

    gender: str | None = None
    accent: str | None = None
    language: str | None = None
    pitch: str | None = None
    speed: str | None = None
    volume: str | None = None
    snr_db: float | None = None
    c50_db: float | None = None
    duration_s: float | None = None
    emotion: str | None = None


@dataclass(frozen=True, slots=True)
class Contradiction:
    """A statement of the answer (``said``) about ``attribute`` that the clip (``fact``) contradicts."""

    attribute: str
    said: str
    fact: str


@dataclass(frozen=True, slots=True)
class _Cue:
    """A regex that finds statements about one attribute; group ``v`` (if any) holds the value words."""

    attribute: str
    value: str  # the stated value, or "" when it comes from group v
    pattern: re.Pattern[str]
    kind: str  # how transcript content is told apart: always|subject|bare|phrase|word|content|duration


@dataclass(frozen=True, slots=True)
class _Statement:
    attribute: str
    value: str | tuple[float, ...]
    said: str


@lru_cache(maxsize=1)
def config() -> dict:
    """The word lists and thresholds of ``faithfulness.toml``."""
    text = files("align_data.stages.quality").joinpath("faithfulness.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _alt(phrases: Iterable[str]) -> str:
    """A regex alternation of phrases (words joined by any whitespace), longest first."""
    items = sorted({p for p in phrases if p.strip()}, key=lambda p: (-len(p), p))
    return "(?:" + "|".join(r"\s+".join(map(re.escape, p.split())) for p in items) + ")" if items else "(?!)"


def _word(core: str) -> str:
    return _B + core + _E


def _cue(attribute: str, value: str, pattern: str, kind: str) -> _Cue:
    return _Cue(attribute, value, re.compile(_word(pattern)), kind)


def _gender_cues(g: dict) -> list[_Cue]:
    every, nouns, person = _alt(g["female"] + g["male"]), _alt(g["nouns"]), _alt(g["voice_words"])
    verbs, ly = _alt(g["verbs"]), r"(?:[a-z]+ly\s+)?"
    strong = [
        rf"the\s+speaker\s+{_SEEMS}\s+(?:(?:a|an)\s+)?{_GAP2}(?P<v>{every})",
        rf"(?:spoken|read|narrated|voiced|delivered)\s+by\s+(?:a|an|the)\s+{_GAP2}(?P<v>{every})",
        rf"(?P<v>{person})(?:'s)?\s+{_alt(g['speaker_nouns'])}",
        rf"the\s+voice\s+(?:is|belongs\s+to|of|sounds\s+like)\s+(?:that\s+of\s+)?(?:a|an)\s+{_GAP2}(?P<v>{every})",
    ]
    subject = [
        rf"(?:a|an|the)\s+{_GAP2}(?P<v>{nouns}),?\s+{ly}{verbs}",
        rf"(?P<v>{_alt(g['subject_pronouns'])})\s+{ly}{verbs}",
        rf"(?P<v>{_alt(g['possessives'])})\s+(?:[a-z]+\s+)?{_alt(g['speech_nouns'])}",
    ]
    return ([_cue("gender", "", p, "always") for p in strong] + [_cue("gender", "", p, "subject") for p in subject]
            + [_cue("gender", "", rf"(?P<v>{every})", "bare")])


def _level_cues(attribute: str, a: dict, common: dict, any_own: list[str]) -> list[_Cue]:
    intens, cop = rf"(?:{_alt(common['intensifiers'])}\s+)?", _alt(common["copulas"])
    gap = r"(?:(?:\s*,\s*|\s+and\s+|\s+)[a-z]+)?\s+"
    listed = rf"(?:{_alt(any_own)}(?:\s*,\s*and\s+|\s*,\s*|\s+and\s+))+{_alt(a['own_nouns'])}"  # "pace and pitch"
    cues = []
    for level in LEVELS:
        if words := a["words"].get(level):
            cues.append(_cue(attribute, level, _alt(words), "phrase"))
        for adjectives, nouns, verbs in ((a["adjectives"], a["nouns"] + a["own_nouns"], True),
                                         (a["own_adjectives"], a["own_nouns"], False)):
            if not adjectives.get(level):
                continue
            adj, noun = _alt(adjectives[level]), _alt(nouns)
            forms = [rf"{adj}{gap}{noun}", rf"{noun}\s+{cop}\s+{intens}{adj}", rf"{adj}\s+{listed}"]
            if verbs:
                forms.append(rf"{_alt(common['speech_verbs'])}\s+{intens}{adj}")
            cues += [_cue(attribute, level, form, "phrase") for form in forms]
    either = _alt([w for level in ("low", "high") for part in ("words", "adjectives", "own_adjectives")
                   for w in a[part].get(level, [])])
    cues.append(_cue(attribute, "normal", rf"neither\s+{intens}{either}\s+nor\s+{intens}{either}", "phrase"))
    return cues


def _accent_cues(a: dict, common: dict) -> list[_Cue]:
    names = _alt(a["names"])
    name = rf"{names}(?:\s*\(\s*{names}\s*\))?"  # "British (RP)"
    run = rf"(?P<v>{name}(?:(?:\s*(?:,|/|or|and)\s*|\s+){name})*)"
    return [
        _cue("accent", "", rf"{run}(?:\s+sounding)?\s+{_alt(a['nouns'])}", "phrase"),
        _cue("accent", "", rf"{_alt(a['nouns'])}\s+{_alt(common['copulas'])}\s+(?:to\s+be\s+)?"
                           rf"(?:(?:{_alt(common['intensifiers'])}|[a-z]+ly)\s+)?(?:like\s+)?(?:(?:a|an)\s+)?{run}",
             "phrase"),
    ]


def _language_cues(lang: dict) -> list[_Cue]:
    name, not_accent = rf"(?P<v>{_alt(lang['names'])})", r"(?!\s+(?:accent|sounding|speaking\s+accent))"
    forms = [
        rf"{_alt(lang['verbs'])}\s+(?:[a-z]+ly\s+)?in\s+(?:the\s+)?{name}{not_accent}",
        rf"in\s+{name}(?=\s*(?:[.,;:!?]|$))",
        rf"(?:speaks|speaking|speak)\s+{name}{not_accent}",
        rf"(?:a|an|the)\s+(?:[a-z]+\s+)?{name}\s+(?:speaker|narrator)",
        rf"{name}\s+speaking\s+(?:speaker|voice|man|woman|narrator|person|reader)",
        rf"language\s+{_SEEMS}\s+{name}",
        rf"in\s+the\s+{name}\s+language",
    ]
    return [_cue("language", "", form, "word") for form in forms]


def _duration_cues(d: dict) -> list[_Cue]:
    number = rf"(?:\d+(?:\.\d+)?|{_alt(d['tens'])}(?:\s+{_alt(d['ones'])})?|{_alt(d['ones'])})"
    unit = rf"(?:{_alt(d['seconds_units'] + d['minutes_units'])}|(?<=\d)s|(?<=\d\s)s)"
    ranged = rf"(?:(?P<a>{number})\s+(?:to|or|and)\s+|(?P<b>\d+(?:\.\d+)?)\s+(?=\d))?"  # "3 to 4", "3-4"
    return [_cue("duration", "", rf"{ranged}(?P<v>{number})\s*(?P<u>{unit})", "duration"),
            _cue("duration", "", rf"(?P<p>{_alt(d['phrases'])})", "duration")]


def _emotion_cues(e: dict, common: dict) -> list[_Cue]:
    intens = rf"(?:{_alt(common['intensifiers'])}\s+)?"
    adj = rf"(?P<v>{_alt(w for words in e['adjectives'].values() for w in words)})"
    forms = [rf"{adj}(?:(?:\s*,\s*|\s+and\s+|\s+)[a-z]+)?\s+{_alt(e['nouns'])}",
             rf"{_alt(e['subjects'])}\s+{_alt(e['copulas'])}\s+{intens}{adj}",
             rf"(?:sounds|sounding|sounded|seems|seeming)\s+{intens}{adj}",
             rf"(?P<v>{_alt(w for words in e['words'].values() for w in words)})"]
    return [_cue("emotion", "", form, "word") for form in forms]


@lru_cache(maxsize=1)
def _cues() -> dict[str, list[_Cue]]:
    c = config()
    own = [n for a in ("pitch", "speed", "volume") for n in c[a]["own_nouns"]]
    return {
        "gender": _gender_cues(c["gender"]),
        "accent": _accent_cues(c["accent"], c["common"]),
        "language": _language_cues(c["language"]),
        **{a: _level_cues(a, c[a], c["common"], own) for a in ("pitch", "speed", "volume")},
        **{a: [_cue(a, v, _alt(c[a][v]), "content") for v in r[3:5]] for a, r in _RECORDING.items()},
        "duration": _duration_cues(c["duration"]),
        "emotion": _emotion_cues(c["emotion"], c["common"]),
    }


@lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A negation right before a statement; a reporting verb."""
    c = config()
    negators = [n for n in c["common"]["negators"] if not n.startswith("n'")]
    verb = rf"(?:{_alt(c['common']['speech_verbs'])}\s+)?"  # "does not speak quickly"
    negation = re.compile(rf"(?:n't|{_B}{_alt(negators)})\s+{verb}(?:{_alt(c['common']['intensifiers'])}\s+)?$")
    return negation, re.compile(_word(_alt(c["gender"]["reporting_verbs"])))


def _normalize(text: str) -> str:
    """Lowercase with hyphens as spaces and straight quotes, of the same length as ``text``."""
    lowered = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    return lowered.translate(_HYPHENS)


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text)


@dataclass(frozen=True, slots=True)
class _Transcript:
    joined: str
    words: frozenset[str]
    durations: frozenset[float]

    def has_phrase(self, text: str) -> bool:
        tokens = _tokens(text)
        return bool(tokens) and f" {' '.join(tokens)} " in self.joined


def _transcript(text: str) -> _Transcript:
    norm = _normalize(text)
    tokens = _tokens(norm)
    values = {v for cue, m in _find(norm, "duration") for v in _value(cue, m)}
    return _Transcript(f" {' '.join(tokens)} ", frozenset(tokens), frozenset(values))


def _number(text: str) -> float:
    d = config()["duration"]
    if _NUMBER.fullmatch(text):
        return float(text)
    return float(sum(d["tens"].get(w, 0) + d["ones"].get(w, 0) for w in text.split()))


def _value(cue: _Cue, m: re.Match[str]) -> str | tuple[float, ...]:
    if cue.value:
        return cue.value
    if cue.attribute != "duration":
        return " ".join(m.group("v").split())
    if m.groupdict().get("p"):
        return (float(config()["duration"]["phrases"][" ".join(m.group("p").split())]),)
    scale = 60.0 if m.group("u").startswith("min") else 1.0
    return tuple(_number(m.group(g)) * scale for g in ("a", "b", "v") if m.group(g))


def _find(norm: str, attribute: str) -> list[tuple[_Cue, re.Match[str]]]:
    """The cue matches of one attribute, overlapping ones resolved longest first, in text order."""
    found = [(cue, m) for cue in _cues()[attribute] for m in cue.pattern.finditer(norm)]
    found.sort(key=lambda cm: (cm[1].start() - cm[1].end(), cm[1].start()))
    taken: list[tuple[_Cue, re.Match[str]]] = []
    for cue, m in found:
        if not any(m.start() < t.end() and t.start() < m.end() for _, t in taken):
            taken.append((cue, m))
    return sorted(taken, key=lambda cm: cm[1].start())


def _reported(norm: str, start: int) -> bool:
    """Whether ``start`` lies after a reporting verb of its sentence (in reported speech)."""
    sentence = max(norm.rfind(c, 0, start) for c in ".!?;") + 1
    return _patterns()[1].search(norm, sentence, start) is not None


def _is_content(cue: _Cue, m: re.Match[str], value: object, t: _Transcript) -> bool:
    """Whether a match is transcript content rather than a statement about the speaker or the recording."""
    norm, whole = m.string, m.group()
    if cue.kind == "always":
        return False
    if cue.kind == "bare":
        return value in t.words or _reported(norm, m.start())
    if cue.kind == "subject":
        return t.has_phrase(whole) or (value in t.words and _reported(norm, m.start()))
    if cue.kind == "word":
        return t.has_phrase(str(value))
    if cue.kind == "content":
        stop = set(config()["common"]["stopwords"])
        return any(w in t.words for w in _tokens(whole) if w not in stop)
    if cue.kind == "duration":
        return bool(set(value) & t.durations)  # type: ignore[call-overload]
    return t.has_phrase(whole)


def _statements(answer: str, transcript: str) -> Iterator[_Statement]:
    """What the answer says about each attribute, in ATTRIBUTES and then text order."""
    norm = _QUOTED.sub(lambda m: " " * len(m.group()), _normalize(answer))
    t, negation = _transcript(transcript), _patterns()[0]
    for attribute in ATTRIBUTES:
        for cue, m in _find(norm, attribute):
            if attribute != "gender" and negation.search(norm, max(0, m.start() - 40), m.start()):
                continue
            value = _value(cue, m)
            if not _is_content(cue, m, value, t):
                start, end = m.span("v") if attribute == "gender" else m.span()
                yield _Statement(attribute, value, " ".join(answer[start:end].split()))


def recording_state(attribute: str, facts: ClipFacts) -> str | None:
    """A clip's noise ('clean' / 'noisy') or reverb ('dry' / 'reverberant') by the thresholds of
    faithfulness.toml; None between them. No noise or room mixed in (None) is clean or dry."""
    field, clean_key, dirty_key, clean, dirty, _, _ = _RECORDING[attribute]
    value, t = getattr(facts, field), config()[attribute]
    if value is None or value >= t[clean_key]:
        return clean
    return dirty if value < t[dirty_key] else None


def _groups(word: str) -> set[str]:
    e = config()["emotion"]
    return {g for part in ("adjectives", "words") for g, words in e[part].items() if word == g or word in words}


def _accent_fits(said: str, accent: str) -> bool:
    a = config()["accent"]
    key = " ".join(accent.lower().split())
    fits = set(a["compatible"].get(key, [])) or {key, *_tokens(key)}
    return any(name in fits for name in re.findall(_word(_alt(a["names"])), said))


def _fact(s: _Statement, facts: ClipFacts) -> str | None:
    """What the clip is, when it contradicts the statement ``s``; None when it does not."""
    c, attribute, value = config(), s.attribute, s.value
    if attribute == "gender":
        stated = "female" if value in c["gender"]["female"] else "male"
        return facts.gender if facts.gender and stated != facts.gender else None
    if attribute == "accent":
        return facts.accent if facts.accent and not _accent_fits(str(value), facts.accent) else None
    if attribute == "language":
        known = facts.language.lower().replace("_", "-").split("-")[0] if facts.language else None
        return facts.language if known and c["language"]["names"][value] != known else None
    if attribute in ("pitch", "speed", "volume"):
        level = getattr(facts, attribute)
        return f"{level} {attribute}" if level and value != level else None
    if attribute in _RECORDING:
        field, _, _, _, _, none, name = _RECORDING[attribute]
        measured, state = getattr(facts, field), recording_state(attribute, facts)
        about = none if measured is None else f"{name} {measured:.0f} dB"
        return f"{state} ({about})" if state and value != state else None
    if attribute == "duration":
        d, real = c["duration"], facts.duration_s
        if real is None:
            return None
        tolerance = max(d["abs_tolerance_s"], d["rel_tolerance"] * real)
        return f"{real:g} s" if all(abs(v - real) > tolerance for v in value) else None  # type: ignore[union-attr]
    fact_groups = _groups(facts.emotion) if facts.emotion else set()
    return facts.emotion if fact_groups and not fact_groups & _groups(str(value)) else None


def contradictions(answer: str, facts: ClipFacts, transcript: str = "") -> tuple[Contradiction, ...]:
    """Statements of ``answer`` about the speaker or the recording that ``facts`` contradict: the first per
    attribute, in ATTRIBUTES order. ``transcript`` is what the clip says (its speaker mentions do not count)."""
    found: dict[str, Contradiction] = {}
    for s in _statements(answer, transcript):
        if s.attribute not in found and (fact := _fact(s, facts)) is not None:
            found[s.attribute] = Contradiction(s.attribute, s.said, fact)
    return tuple(found.values())


def contradicted_attributes(answer: str, facts: ClipFacts, transcript: str = "") -> tuple[str, ...]:
    """The distinct attributes contradicted, in ATTRIBUTES order."""
    return tuple(c.attribute for c in contradictions(answer, facts, transcript))


def _known(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return None if text.lower() in config()["seed"]["unknown"] else text


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _facts(values: Mapping[str, object]) -> ClipFacts:
    """ClipFacts from raw values keyed by ClipFacts field names, normalized; unknowns become None."""
    seed = config()["seed"]
    text = {k: _known(values.get(k)) for k in ("gender", "accent", "language", "pitch", "speed", "volume", "emotion")}
    low = {k: v.lower() if v else None for k, v in text.items()}
    levels = {k: seed["levels"].get(low[k]) if low[k] else None for k in ("pitch", "speed", "volume")}
    numbers = {k: _float(values.get(k)) for k in ("snr_db", "c50_db", "duration_s")}
    return ClipFacts(gender=seed["genders"].get(low["gender"]) if low["gender"] else None, accent=text["accent"],
                     language=low["language"], emotion=low["emotion"], **levels, **numbers)


def facts_from_row(voice: Mapping | None, para: Mapping | None) -> ClipFacts:
    """Facts from a record's voice and paralinguistics as dicts (Parquet row form); missing/None/'unknown' → None."""
    v, p = voice or {}, para or {}
    return _facts({"gender": v.get("gender"), "accent": v.get("accent"), "language": v.get("language"),
                   "emotion": v.get("emotion"), "pitch": p.get("pitch_level"), "speed": p.get("speed_level"),
                   "volume": p.get("volume_level"), "snr_db": p.get("snr_db"), "c50_db": p.get("c50_db"),
                   "duration_s": p.get("duration_s")})


def facts_from_seed(seed: str) -> tuple[ClipFacts, str]:
    """The facts and the quoted transcript of a seed transcript such as
    ``[00:00:00 - 00:00:03]: "Hi." (Gender: Female, Accent: American, Pitch: high, ..., Duration: 3s)``."""
    m = _SEED_TEXT.search(seed)
    transcript, rest = (m.group("text"), seed[m.end():]) if m else ("", seed)
    rest = rest.strip()
    rest = rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest
    keys = {"gender": "gender", "accent": "accent", "language": "language", "emotion": "emotion", "pitch": "pitch",
            "speed": "speed", "volume": "volume", "duration": "duration_s", "snr": "snr_db", "c50": "c50_db"}
    values: dict[str, object] = {}
    for pair in re.split(r",\s*(?=[A-Za-z0-9 ]+:)", rest):
        key, _, value = pair.partition(":")
        if (field := keys.get(key.strip().lower())) is not None:
            number = _NUMBER.search(value)
            values[field] = (number.group() if number else None) if field.endswith(("_s", "_db")) else value
    return _facts(values), transcript
