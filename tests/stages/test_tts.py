import subprocess

import numpy as np
import pytest

from align_data.config import InterleaveConfig, TTSConfig, espeak_voices
from align_data.schemas import Record, SourceRef
from align_data.stages.interleave import InterleaveStage
from align_data.stages.tts import TTSStage
from align_data.stages.tts.audio import decode_audio
from align_data.stages.tts.espeak import EspeakEngine

ESPEAK = TTSConfig(voices=espeak_voices())  # the espeak-ng part of the default pool: fast, and what these tests measure


def _spoken(text, rid="r-1"):
    record = Record(id=rid, shard_id=0, source=SourceRef("t", "d", 0), text=text)
    return InterleaveStage(InterleaveConfig(task_weights={"continuation": 1.0}), 0)([record])[0]


def test_speaks_16k_mono_flac_with_recorded_voice():
    stage = TTSStage(ESPEAK, seed=0)
    stage.setup()
    out = stage([_spoken("The weather is lovely today.")])[0]
    assert out.live, out.error
    samples, rate = decode_audio(out.audio[0].flac)
    assert rate == 16000 and samples.ndim == 1 and samples.size == out.audio[0].num_samples
    assert 0.8 < samples.size / rate < 5
    assert out.voice.backend == "espeak" and out.voice.gender in ("male", "female")
    assert ESPEAK.rate_range[0] <= out.voice.rate <= ESPEAK.rate_range[1]


def test_option_like_text_is_spoken_not_parsed():
    stage = TTSStage(ESPEAK, seed=0)
    out = stage([_spoken("-rf --version -v xx")])[0]
    assert out.live and out.audio[0].num_samples > 8000  # words were spoken, not taken as flags


def test_deterministic_bytes():
    a = TTSStage(ESPEAK, seed=0)([_spoken("Same text, same voice.")])[0]
    b = TTSStage(ESPEAK, seed=0)([_spoken("Same text, same voice.")])[0]
    assert a.audio[0].flac == b.audio[0].flac and a.voice == b.voice


def test_engine_failure_and_timeout_become_error_records(monkeypatch):
    stage = TTSStage(ESPEAK, seed=0)
    stage.engines["espeak"] = EspeakEngine(binary="false")  # exits 1, writes nothing
    out = stage([_spoken("Hello there my friend.")])[0]
    assert out.error.kind == "tts_engine_failed" and out.error.stage == "tts"

    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    stage.engines["espeak"] = EspeakEngine()
    monkeypatch.setattr(subprocess, "run", hang)
    out = stage([_spoken("Hello there my friend.", "r-2")])[0]
    assert out.error.kind == "tts_timeout"


def test_silent_output_is_an_error(monkeypatch):
    stage = TTSStage(ESPEAK, seed=0)
    stage.setup()
    monkeypatch.setattr(stage.engines["espeak"], "synthesize", lambda *a, **k: (np.zeros(16000, np.float32), 16000))
    out = stage([_spoken("Nothing audible here.")])[0]
    assert out.error.kind == "tts_silent"


def test_missing_binary_is_a_clear_error():
    from align_data.errors import AlignDataError

    with pytest.raises(AlignDataError, match="apt-get install espeak-ng"):
        EspeakEngine(binary="espeak-ng-not-here").check()


def test_mixed_backend_pool_records_what_was_used():
    pytest.importorskip("piper")
    pytest.importorskip("hibari")
    from align_data.config import VoiceSpec

    cfg = TTSConfig(voices=[
        VoiceSpec(backend="espeak", id="en-us+f2", gender="female", accent="American", weight=1),
        VoiceSpec(backend="piper", id="en_US-joe-medium", gender="male", accent="American", weight=1),
        VoiceSpec(backend="hibari", id="heart", gender="female", accent="American", weight=1),
    ])
    stage = TTSStage(cfg, seed=0)
    stage.setup()
    records = [_spoken(f"Voice number {i} reads this sentence aloud.", f"r-{i}") for i in range(12)]
    out = stage(records)
    backends = {r.voice.backend for r in out}
    assert all(r.live for r in out) and backends == {"espeak", "piper", "hibari"}
    for r in out:
        samples, rate = decode_audio(r.audio[0].flac)
        assert rate == 16000 and samples.size / rate > 1.0
        if r.voice.backend == "espeak":
            assert r.voice.pitch is not None
        else:  # neural voices: only the speed is controlled, pitch/volume are not claimed
            assert r.voice.pitch is None and r.voice.volume is None
            assert cfg.speed_range[0] <= r.voice.rate <= cfg.speed_range[1]
    again = TTSStage(cfg, seed=0)(records)
    assert [r.audio for r in again] == [r.audio for r in out]  # every backend is deterministic here


def test_offline_voice_ids_are_checked():
    from pydantic import ValidationError

    from align_data.config import VoiceSpec

    with pytest.raises(ValidationError, match="not available offline"):
        TTSConfig(voices=[VoiceSpec(backend="hibari", id="bella", gender="female", accent="American")])


def test_default_espeak_pool_speaks_and_genders_are_truthful():
    """Every default voice speaks; at the same pitch setting, female variants measure higher f0 than male."""
    from align_data.config import ParalinguisticsConfig
    from align_data.stages.paralinguistics.stage import measure
    from align_data.stages.tts.audio import to_mono_16k

    engine = EspeakEngine()
    f0 = {"female": [], "male": []}
    for spec in ESPEAK.voices:  # the espeak part of the default pool
        samples, rate = engine.synthesize("The garden looks lovely after the rain.", spec.id, 170, 50, 100)
        audio = to_mono_16k(samples, rate)
        para = measure(audio, 16000, 7, ParalinguisticsConfig(), spec.gender)
        assert audio.size > 16000 and para.f0_mean_hz is not None, spec.id
        f0[spec.gender].append(para.f0_mean_hz)
    assert len(ESPEAK.voices) >= 10
    assert min(f0["female"]) > max(f0["male"]) * 0.9
    assert np.mean(f0["female"]) > np.mean(f0["male"]) * 1.3


def test_expand_pool_splits_a_wildcard_over_the_speakers_and_checks_named_ones():
    from align_data.config import VoiceSpec
    from align_data.errors import AlignDataError
    from align_data.stages.tts.stage import expand_pool

    speakers = {"coqui": [{"id": name} for name in ("ana", "ben", "cleo", "dev")]}
    espeak = VoiceSpec(id="en-us+f2", gender="female", accent="American", weight=2.0)
    star = VoiceSpec(backend="coqui", id="*", gender="unknown", accent="unknown", weight=2.0)
    pool = expand_pool([espeak, star], speakers)
    assert [v.id for v in pool] == ["en-us+f2", "ana", "ben", "cleo", "dev"]
    assert [v.weight for v in pool] == [2.0, 0.5, 0.5, 0.5, 0.5]  # the backend keeps its configured share
    named = VoiceSpec(backend="coqui", id="ben", gender="male", accent="Irish")
    assert expand_pool([named], speakers) == [named]
    with pytest.raises(AlignDataError, match="'zoe' is not a speaker of the model.*ana, ben"):
        expand_pool([named.model_copy(update={"id": "zoe"})], speakers)


def test_coqui_without_vary_speed_records_no_rate():
    from align_data.config import VoiceSpec
    from align_data.stages.tts.stage import sample_voice

    cfg = TTSConfig(voices=[VoiceSpec(backend="coqui", id="ana", gender="unknown", accent="unknown")],
                    coqui={"model_path": "/m/model.pth", "vary_speed": False})
    voice = sample_voice(cfg, np.random.default_rng(0))
    assert voice.backend == "coqui" and voice.rate is None and voice.pitch is None


def test_default_pool_is_mostly_natural_voices_and_gender_balanced():
    from collections import defaultdict

    pool = TTSConfig().voices
    share: dict[str, float] = defaultdict(float)
    gender: dict[str, float] = defaultdict(float)
    for v in pool:
        share["natural" if v.backend in ("hibari", "kokoro") else v.backend] += v.weight
        gender[v.gender] += v.weight
    total = sum(share.values())
    assert share["natural"] / total >= 0.6 and share["espeak"] > 0
    assert abs(gender["female"] - gender["male"]) / total < 0.05
    assert {v.accent for v in pool if v.backend == "espeak"} >= {"American", "British", "Scottish", "Caribbean"}
    assert any(v.mix for v in pool) and all(v.mix is None or v.backend == "kokoro" for v in pool)
