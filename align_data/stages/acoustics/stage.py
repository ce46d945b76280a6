"""Acoustics stage: per record one seeded draw of loudness, noise and room, applied to every clip."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np

from align_data.config import AcousticsConfig
from align_data.errors import AlignDataError
from align_data.schemas import Acoustics, AudioClip, Record
from align_data.stages.acoustics.signals import (
    c50_db, coloured_noise, db, fit_noise, mix_at_snr, power, synthetic_rir, trim_silence,
)
from align_data.stages.base import RecordError, Stage, rng_for
from align_data.stages.tts.audio import decode_audio, encode_flac, to_mono_16k

NOISE_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclasses.dataclass(frozen=True, slots=True)
class _Draw:
    """The random choices for one record."""

    level_dbfs: float | None
    noise_type: str | None
    snr_db: float | None
    rt60_s: float | None


class AcousticsStage(Stage):
    """Trim silence, set loudness, optionally add reverb and noise at a target SNR; record what was done."""

    name: ClassVar[str] = "acoustics"
    reads: ClassVar[tuple[str, ...]] = ("audio",)
    writes: ClassVar[tuple[str, ...]] = ("audio", "acoustics")

    def __init__(self, config: AcousticsConfig, seed: int):
        self.config = config
        self.seed = seed
        self.noises: list[tuple[str, np.ndarray]] | None = None

    def setup(self) -> None:
        """Load the user's noise folder once (16 kHz mono), if the config uses it."""
        if self.noises is not None or "folder" not in self.config.noise_types or self.config.noise_prob == 0:
            return
        folder = Path(self.config.noise_dir or "")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise AlignDataError(f"acoustics.noise_dir={folder}: no .wav/.flac/.ogg files found")
        self.noises = []
        for path in files:
            samples, rate = decode_audio(path.read_bytes())
            self.noises.append((path.name, to_mono_16k(samples, rate)))

    def _draw(self, rng: np.random.Generator) -> _Draw:
        cfg = self.config
        level = float(rng.uniform(*cfg.loudness_range_dbfs)) if cfg.loudness == "normalize" else None
        noise_type = snr = rt60 = None
        if rng.random() < cfg.noise_prob:
            noise_type = cfg.noise_types[int(rng.integers(len(cfg.noise_types)))]
            snr = float(rng.uniform(*cfg.snr_range_db))
        if rng.random() < cfg.reverb_prob:
            rt60 = float(rng.uniform(*cfg.rt60_range_s))
        return _Draw(level, noise_type, snr, rt60)

    def _noise(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        if kind != "folder":
            return coloured_noise(kind, n, rng)
        self.setup()
        _, samples = self.noises[int(rng.integers(len(self.noises)))]
        return fit_noise(samples, n, rng)

    def process(self, record: Record) -> Record:
        if not record.audio:
            raise RecordError("no_audio", "record reached acoustics without audio")
        rng = rng_for(self.seed, record.shard_id, record.id, self.name)
        draw = self._draw(rng)
        rate = record.audio[0].sample_rate
        clean = []
        cut_start = cut_end = 0
        for clip in record.audio:
            samples, _ = decode_audio(clip.flac)
            if self.config.trim_silence:
                samples, a, b = trim_silence(samples, rate, self.config.trim_top_db)
                cut_start, cut_end = cut_start + a, cut_end + b
            clean.append(samples.astype(np.float32))
        speech_power = power(np.concatenate(clean))
        if speech_power <= 0:
            raise RecordError("silent_audio", "no signal left after trimming")
        gain = 1.0 if draw.level_dbfs is None else float(np.sqrt(10 ** (draw.level_dbfs / 10) / speech_power))
        rir = synthetic_rir(draw.rt60_s, rate, rng) if draw.rt60_s is not None else None
        outs, speech_parts, noise_parts = [], [], []
        for samples in clean:
            speech = samples * gain
            if rir is not None:
                speech = np.convolve(speech, rir)[: speech.size].astype(np.float32)
            if draw.noise_type is not None:
                mixed, noise = mix_at_snr(speech, self._noise(draw.noise_type, speech.size, rng), draw.snr_db)
            else:
                mixed, noise = speech, np.zeros(0, np.float32)
            peak = float(np.max(np.abs(mixed))) if mixed.size else 0.0
            if peak > self.config.peak_limit:  # scale speech and noise together: SNR is kept
                scale = self.config.peak_limit / peak
                mixed, speech, noise = mixed * scale, speech * scale, noise * scale
            outs.append(mixed.astype(np.float32))
            speech_parts.append(speech)
            noise_parts.append(noise)
        snr = None
        if draw.noise_type is not None:
            snr = round(db(power(np.concatenate(speech_parts)) / power(np.concatenate(noise_parts))), 3)
        final_level = power(np.concatenate(outs))
        info = Acoustics(
            gain_db=round(db(final_level / speech_power), 3),
            trimmed_start_s=round(cut_start / rate, 4), trimmed_end_s=round(cut_end / rate, 4),
            peak=round(max(float(np.max(np.abs(o))) for o in outs), 4),
            noise_type=draw.noise_type, target_snr_db=None if draw.snr_db is None else round(draw.snr_db, 3),
            snr_db=snr, rt60_s=None if draw.rt60_s is None else round(draw.rt60_s, 3),
            c50_db=None if rir is None else round(c50_db(rir, rate), 3),
        )
        clips = tuple(AudioClip(encode_flac(o, rate), rate, int(o.size)) for o in outs)
        return dataclasses.replace(record, audio=clips, acoustics=info)
