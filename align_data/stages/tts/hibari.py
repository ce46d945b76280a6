"""hibari engine (optional ``hibari`` extra): the bundled ``heart`` voice only, so nothing is downloaded."""

from __future__ import annotations

import numpy as np

from align_data.errors import AlignDataError
from align_data.stages.base import RecordError
from align_data.stages.tts.audio import checked_engine_audio

INSTALL_HINT = 'install the optional hibari extra: pip install "align-data[hibari]"'
VOICE = "heart"  # the one voice inside the package; hibari fetches the others from the network
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # the range hibari documents for ``speed``


class HibariEngine:
    """Synthesizes with hibari's ``heart`` voice (US English, female, 24 kHz); ``seed`` fixes its noise."""

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._tts = None

    def check(self) -> None:
        """Fail early with an install hint if hibari or its bundled voice is missing."""
        try:
            from hibari.voices import voice_path
        except ImportError as exc:
            raise AlignDataError(f"hibari-tts is not installed: {INSTALL_HINT}") from exc
        try:
            voice_path(VOICE, download_missing=False)
        except (FileNotFoundError, ValueError) as exc:
            raise AlignDataError(f"this hibari-tts has no bundled {VOICE!r} voice: {INSTALL_HINT}") from exc

    def load(self) -> None:
        """Load the model once; later calls do nothing."""
        if self._tts is not None:
            return
        self.check()
        from hibari import Hibari

        self._tts = Hibari(voice=VOICE, threads=self.threads)
        self._tts.g2p  # noqa: B018 - hibari loads its lexicons on first use; load them here, not in record one

    @property
    def sample_rate(self) -> int:
        from hibari import SAMPLE_RATE

        return SAMPLE_RATE

    def voices(self) -> list[dict]:
        """The bundled voice, described from hibari's voice registry."""
        from hibari.voices import VOICES

        meta = VOICES[VOICE]
        return [{"id": VOICE, "gender": meta["gender"], "accent": meta["accent"],
                 "language": meta["language"].lower()}]

    def synthesize(self, text: str, seed: int, speed: float | None = None) -> tuple[np.ndarray, int]:
        """Float32 samples and sample rate for ``text``; same text, seed and speed give identical samples.

        ``speed`` (``None`` = 1.0) runs from 0.5 (slow) to 2.0 (fast); hibari normalizes numbers itself.
        """
        if speed is not None and not MIN_SPEED <= speed <= MAX_SPEED:
            raise RecordError("tts_bad_params", f"hibari speed {speed} is outside [{MIN_SPEED}, {MAX_SPEED}]")
        self.load()
        audio = np.asarray(self._tts(text, speed=1.0 if speed is None else speed, seed=seed), dtype=np.float32)
        return checked_engine_audio(audio, "hibari", text, max_peak=None), self.sample_rate
