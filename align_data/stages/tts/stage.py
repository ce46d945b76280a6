"""TTS stage: a seeded voice and prosody per record, every speech segment synthesized, 16 kHz FLAC."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from align_data.config import TTSConfig
from align_data.schemas import AudioClip, Record, Voice
from align_data.stages.base import RecordError, Stage, rng_for
from align_data.stages.tts.audio import encode_flac, to_mono_16k
from align_data.stages.tts.espeak import EspeakEngine

MIN_PEAK = 1e-3  # quieter than this is silence: the engine produced nothing speakable


def sample_voice(config: TTSConfig, rng: np.random.Generator) -> Voice:
    """One voice from the weighted pool, with rate/pitch/volume drawn from the configured ranges."""
    weights = np.array([v.weight for v in config.voices], dtype=float)
    spec = config.voices[int(rng.choice(len(config.voices), p=weights / weights.sum()))]
    return Voice(
        backend=config.backend, voice_id=spec.id, gender=spec.gender, accent=spec.accent,
        language=spec.language,
        rate=float(rng.integers(config.rate_range[0], config.rate_range[1] + 1)),
        pitch=float(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
        volume=float(rng.integers(config.volume_range[0], config.volume_range[1] + 1)),
    )


class TTSStage(Stage):
    """Speak each speech segment of a record in one sampled voice."""

    name: ClassVar[str] = "tts"
    reads: ClassVar[tuple[str, ...]] = ("segments",)
    writes: ClassVar[tuple[str, ...]] = ("audio", "voice")

    def __init__(self, config: TTSConfig, seed: int):
        self.config = config
        self.seed = seed
        self.engine: EspeakEngine | None = None

    def setup(self) -> None:
        self.engine = EspeakEngine(timeout_s=self.config.timeout_s)
        self.engine.check()

    def process(self, record: Record) -> Record:
        if self.engine is None:
            self.setup()
        voice = sample_voice(self.config, rng_for(self.seed, record.shard_id, record.id, self.name))
        clips = []
        for segment in record.segments:
            if segment.modality != "speech":
                continue
            samples, rate = self.engine.synthesize(segment.text, voice.voice_id, int(voice.rate),
                                                   int(voice.pitch), int(voice.volume))
            audio = to_mono_16k(samples, rate, self.config.sample_rate)
            if audio.size == 0 or float(np.max(np.abs(audio))) < MIN_PEAK:
                raise RecordError("tts_silent", f"no audible speech for {segment.text[:60]!r}")
            clips.append(AudioClip(flac=encode_flac(audio, self.config.sample_rate),
                                   sample_rate=self.config.sample_rate, num_samples=int(audio.size)))
        return dataclasses.replace(record, audio=tuple(clips), voice=voice)
