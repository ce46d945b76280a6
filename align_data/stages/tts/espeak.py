"""espeak-ng engine: one subprocess per text, argument list only, text on stdin, WAV on stdout."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from align_data.errors import AlignDataError
from align_data.stages.base import RecordError
from align_data.stages.tts.audio import decode_audio


class EspeakEngine:
    """Synthesizes with the Debian ``espeak-ng`` binary; text never reaches the argument list."""

    def __init__(self, timeout_s: float = 30.0, binary: str = "espeak-ng"):
        self.timeout_s = timeout_s
        self.binary = binary

    def check(self) -> None:
        """Fail early with an install hint if espeak-ng is absent."""
        if shutil.which(self.binary) is None:
            raise AlignDataError(
                "espeak-ng is not installed: run `sudo apt-get install espeak-ng` (Debian/Ubuntu) "
                "or `make setup`, which installs it when run as root")

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, volume: int) -> tuple[np.ndarray, int]:
        """Float32 samples and native sample rate for ``text``."""
        args = [self.binary, "--stdout", "-v", voice, "-s", str(rate),
                "-p", str(pitch), "-a", str(volume)]
        try:
            proc = subprocess.run(args, input=text.encode("utf-8"), capture_output=True,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RecordError("tts_timeout", f"espeak-ng ran over {self.timeout_s}s") from exc
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip()[:300]
            raise RecordError("tts_engine_failed", f"espeak-ng exit {proc.returncode}: {msg}")
        try:
            return decode_audio(proc.stdout)
        except Exception as exc:  # soundfile raises its own error types for bad headers
            raise RecordError("tts_bad_audio", f"espeak-ng output did not decode: {exc}") from exc
