"""Text normalization applied to both the span text and the ASR transcript before counting word errors.

Rules, in order:
1. Unicode NFKC, lowercase; typographic quotes and dashes become ASCII.
2. Numbers become words, so "15", "fifteen" and "Fifteen" compare equal: numbers with thousands separators
   are cardinals ("1,200" -> "one thousand two hundred"); currency symbols move behind the amount as a word ("$5" -> "5 dollars"); "%" is
   "percent"; ordinals ("21st") become ordinal words; clock times ("6:45") are read "six forty five" and
   "7:00" is "seven"; decimals are read digit by digit after "point"; four-digit numbers from 1100 to 1999
   and 2010 to 2099 are read as years ("1612" -> "sixteen twelve", "1905" -> "nineteen oh five"); other
   integers are cardinals without "and" ("105" -> "one hundred five"); numbers of more than 15 digits or
   with leading zeros are read digit by digit.
3. "&" is "and"; apostrophes are removed ("don't" -> "dont"); every other character that is not a letter
   or a digit of some script (hyphens, slashes, punctuation, symbols) is a word break.
4. British spellings in ``spellings.txt`` become American ones (Whisper writes American English).
5. Runs of whitespace collapse; the result is a list of words.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib.resources import files

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros", "¥": "yen"}
_TRANSLATE = str.maketrans({"‘": "'", "’": "'", "ʼ": "'", "`": "'", "“": '"', "”": '"', "–": "-", "—": "-"})

_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d,]*\d)")
_CURRENCY_AMOUNT = re.compile(r"([$£€¥])\s?(\d[\d,]*(?:\.\d+)?)")
_PERCENT = re.compile(r"(\d)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_INTEGER = re.compile(r"\d+")
_NON_WORD = re.compile(r"[\W_]+")  # not a letter or digit of any script


def cardinal(n: int) -> str:
    """English words for a non-negative integer, without "and": 105 -> "one hundred five"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + cardinal(rest))
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return cardinal(high) + " " + name + ("" if rest == 0 else " " + cardinal(rest))
    raise ValueError(n)  # unreachable: every n >= 1000 meets a scale


def ordinal(n: int) -> str:
    """English ordinal words: 21 -> "twenty first", 12 -> "twelfth"."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year(n: int) -> str:
    high, low = divmod(n, 100)
    if low == 0:
        return cardinal(high) + " hundred"
    return cardinal(high) + " " + (cardinal(low) if low >= 10 else "oh " + cardinal(low))


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def number_words(text: str) -> str:
    """Words for a run of digits, by the rules in the module docstring."""
    if len(text) > 15 or (len(text) > 1 and text.startswith("0")):
        return _digits(text)
    n = int(text)
    if len(text) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return _year(n)
    return cardinal(n)


def _time(match: re.Match) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes == 0:
        return f" {cardinal(hours)} "
    return f" {cardinal(hours)} {'oh ' + cardinal(minutes) if minutes < 10 else cardinal(minutes)} "


@lru_cache(maxsize=1)
def _spellings() -> dict[str, str]:
    """British -> American spellings (data file: one ``british american`` pair per line)."""
    text = files("align_data.stages.quality").joinpath("spellings.txt").read_text(encoding="utf-8")
    pairs = (line.split() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {british: american for british, american in pairs}


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` after the normalization above (the same for references and transcripts)."""
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE).lower()
    text = _CURRENCY_AMOUNT.sub(lambda m: f" {m.group(2)} {_CURRENCY[m.group(1)]} ", text)
    text = _THOUSANDS.sub(lambda m: f" {cardinal(int(m.group(1).replace(',', '')))} ", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _ORDINAL.sub(lambda m: f" {ordinal(int(m.group(1)))} ", text)
    text = _TIME.sub(_time, text)
    text = _DECIMAL.sub(lambda m: f" {number_words(m.group(1))} point {_digits(m.group(2))} ", text)
    text = _INTEGER.sub(lambda m: f" {number_words(m.group(0))} ", text)
    text = text.replace("&", " and ").replace("'", "")
    spellings = _spellings()
    return [spellings.get(w, w) for w in _NON_WORD.sub(" ", text).split()]


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Word-level edit distance: substitutions + deletions + insertions turning reference into hypothesis."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> tuple[float, int, int]:
    """(WER, word errors, reference words) of two texts after normalization; an empty reference counts
    every hypothesis word as an error over a denominator of 1."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    errors = word_errors(ref, hyp)
    return errors / max(len(ref), 1), errors, len(ref)
