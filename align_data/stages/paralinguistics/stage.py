"""Measure duration, f0, loudness and speaking rate of a record's speech; write the seed transcript."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from functools import lru_cache
from importlib.resources import files
from typing import ClassVar

import numpy as np

from align_data.config import ParalinguisticsConfig
from align_data.models.cache import cache_dir
from align_data.schemas import Paralinguistics, Record, Voice
from align_data.stages.base import RecordError, Stage
from align_data.stages.tts.audio import decode_audio

FRAME = 1024
HOP = 256
ACTIVE_DB_BELOW_PEAK = 30.0  # frames within this many dB of the loudest frame count as speech


@lru_cache(maxsize=1)
def reference_levels() -> dict:
    return tomllib.loads(files("align_data.stages.paralinguistics").joinpath("levels.toml").read_text())


def level(value: float | None, low: float, high: float) -> str:
    """'low' / 'normal' / 'high' against a reference range; 'unknown' when not measured."""
    if value is None or math.isnan(value):
        return "unknown"
    return "low" if value < low else "high" if value > high else "normal"


def measure(samples: np.ndarray, rate: int, n_words: int, cfg: ParalinguisticsConfig,
            gender: str) -> Paralinguistics:
    """Acoustic measures of mono float samples."""
    import librosa

    duration = samples.size / rate
    if samples.size < FRAME:
        samples = np.pad(samples, (0, FRAME - samples.size))
    rms = librosa.feature.rms(y=samples, frame_length=FRAME, hop_length=HOP, center=True)[0]
    rms_db = 20 * np.log10(np.maximum(rms, 1e-10))
    active = rms_db > rms_db.max() - ACTIVE_DB_BELOW_PEAK
    active_rms = float(np.sqrt(np.mean(rms[active] ** 2))) if active.any() else 0.0
    rms_dbfs = 20 * math.log10(max(active_rms, 1e-10))
    f0 = librosa.yin(samples, fmin=cfg.f0_min_hz, fmax=cfg.f0_max_hz, sr=rate,
                     frame_length=FRAME, hop_length=HOP, center=True)
    n = min(f0.size, active.size)
    voiced = f0[:n][active[:n] & (f0[:n] > cfg.f0_min_hz * 1.05) & (f0[:n] < cfg.f0_max_hz * 0.95)]
    f0_mean = float(np.mean(voiced)) if voiced.size else None
    f0_std = float(np.std(voiced)) if voiced.size else None
    wps = n_words / duration if duration > 0 else 0.0
    ref = {k: v.get(gender, v["unknown"]) for k, v in reference_levels().items()}
    # levels come from the stored (rounded) values, so a reader recomputing them gets the same answer
    f0_mean = None if f0_mean is None else round(f0_mean, 2)
    rms_dbfs, wps = round(rms_dbfs, 2), round(wps, 4)
    return Paralinguistics(
        duration_s=round(duration, 4),
        speech_rate_wps=wps,
        f0_mean_hz=f0_mean,
        f0_std_hz=None if f0_std is None else round(f0_std, 2),
        pitch_level=level(f0_mean, ref["pitch"]["low"], ref["pitch"]["high"]),
        rms_dbfs=rms_dbfs,
        volume_level=level(rms_dbfs, ref["volume"]["low"], ref["volume"]["high"]),
        speed_level=level(wps, ref["speed"]["low"], ref["speed"]["high"]),
        snr_db=None,  # set by the caller from the acoustics stage, where noise was mixed in
    )


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


# The words a description would use for each level (a speaker is slow or fast, quiet or loud, not "low speed").
LEVEL_WORDS = {"pitch": {"low": "low", "normal": "normal", "high": "high"},
               "speed": {"low": "slow", "normal": "normal", "high": "fast"},
               "volume": {"low": "quiet", "normal": "normal", "high": "loud"}}


def level_word(attribute: str, level_value: str) -> str:
    return LEVEL_WORDS[attribute].get(level_value, level_value)


def seed_transcript(spoken: str, voice: Voice, para: Paralinguistics) -> str:
    """The DeSTA2 seed transcript: time span, quoted words, then the attributes in parentheses, levels in the
    words a description uses (Speed: slow / normal / fast, Volume: quiet / normal / loud)."""
    attrs = [
        f"Gender: {voice.gender.capitalize()}",
        f"Accent: {voice.accent}",
        f"Pitch: {level_word('pitch', para.pitch_level)}",
        f"Speed: {level_word('speed', para.speed_level)}",
        f"Volume: {level_word('volume', para.volume_level)}",
        f"Duration: {max(1, round(para.duration_s))}s",
    ]
    if para.snr_db is not None:
        attrs.append(f"SNR: {round(para.snr_db)}dB")
    if para.c50_db is not None:
        attrs.append(f"C50: {round(para.c50_db)}dB")
    if voice.emotion != "unknown":
        attrs.insert(2, f"Emotion: {voice.emotion}")
    return f'[00:00:00 - {_clock(para.duration_s)}]: "{spoken}" ({", ".join(attrs)})'


class ParalinguisticsStage(Stage):
    """Decode the record's clips, measure them together, and write the seed transcript."""

    name: ClassVar[str] = "paralinguistics"
    reads: ClassVar[tuple[str, ...]] = ("segments", "audio", "voice")
    writes: ClassVar[tuple[str, ...]] = ("paralinguistics", "description")
    requires: ClassVar[tuple[str, ...]] = ("librosa",)

    def __init__(self, config: ParalinguisticsConfig):
        self.config = config

    def setup(self) -> None:
        # librosa JIT-compiles on first use (~25 s); a persistent numba cache makes later runs start fast
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
        import librosa  # noqa: F401  (import once per worker, not per record)

    def process(self, record: Record) -> Record:
        if not record.audio or record.voice is None:
            raise RecordError("no_audio", "record reached paralinguistics without audio")
        parts, rate = [], record.audio[0].sample_rate
        for clip in record.audio:
            samples, clip_rate = decode_audio(clip.flac)
            if clip_rate != rate:
                raise RecordError("mixed_rates", f"clips at {rate} and {clip_rate} Hz")
            parts.append(samples)
        samples = np.concatenate(parts)
        spoken = " ".join(s.text for s in record.segments if s.modality == "speech")
        para = measure(samples, rate, len(spoken.split()), self.config, record.voice.gender)
        if record.acoustics is not None:  # known from the mixing, not estimated
            para = dataclasses.replace(para, snr_db=record.acoustics.snr_db, c50_db=record.acoustics.c50_db)
        return dataclasses.replace(record, paralinguistics=para,
                                   description=seed_transcript(spoken, record.voice, para))
