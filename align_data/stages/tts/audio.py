"""Audio helpers shared by speech stages: resample, mono, FLAC encode/decode (in memory)."""

from __future__ import annotations

import io

import numpy as np

TARGET_RATE = 16000
SILENT_PEAK = 1e-3  # quieter than this is silence: the engine produced nothing speakable
MAX_PEAK = 0.95  # raw neural-model output above this is scaled down instead of clipped


def checked_engine_audio(audio: np.ndarray, engine: str, text: str,
                         max_peak: float | None = MAX_PEAK) -> np.ndarray:
    """An engine's raw output, refused when non-finite or silent, scaled down when it peaks over ``max_peak``."""
    from align_data.stages.base import RecordError

    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not np.isfinite(peak):
        raise RecordError("tts_bad_audio", f"{engine} produced non-finite samples")
    if peak < SILENT_PEAK:
        raise RecordError("tts_silent", f"{engine} produced no audible speech for {text[:80]!r}")
    if max_peak is not None and peak > max_peak:
        audio = audio * (max_peak / peak)
    return audio


def to_mono_16k(samples: np.ndarray, rate: int, target: int = TARGET_RATE) -> np.ndarray:
    """Float32 mono at ``target`` Hz, resampled with a band-limited filter (soxr)."""
    import soxr

    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate != target:
        audio = soxr.resample(audio, rate, target, quality="HQ").astype(np.float32)
    return audio


def encode_flac(samples: np.ndarray, rate: int) -> bytes:
    """16-bit FLAC bytes of float samples (clipped to [-1, 1])."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Float32 samples and rate of an in-memory audio file (FLAC or WAV)."""
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return samples, rate
