"""coqui-tts engine on a tiny random-init VITS, loaded by path the way a user's downloaded model is."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from align_data.errors import AlignDataError
from align_data.stages.base import RecordError
from align_data.stages.tts.coqui import TINY_SAMPLE_RATE, CoquiEngine, build_tiny_vits

SENTENCE = "The quick brown fox jumps over the lazy dog."
SPEAKERS = ["ana", "ben", "cleo"]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> CoquiEngine:
    pytest.importorskip("TTS")
    model, config = build_tiny_vits(tmp_path_factory.mktemp("models") / "tiny-vits")
    engine = CoquiEngine(str(model), str(config))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> CoquiEngine:
    pytest.importorskip("TTS")
    model, config = build_tiny_vits(tmp_path_factory.mktemp("models") / "tiny-vits-multi", speakers=SPEAKERS)
    engine = CoquiEngine(str(model), str(config))
    engine.load()
    return engine


def test_check_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "TTS.api", None)  # import TTS.api now raises ImportError
    with pytest.raises(AlignDataError, match=r"align-data\[coqui\]"):
        CoquiEngine(str(tmp_path / "model.pth"), str(tmp_path / "config.json")).check()


class _NativeLibMissing:
    """Import hook that fails like PyPI's CUDA torchaudio does beside CPU torch."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] == "TTS":
            raise OSError("libc10_cuda.so: cannot open shared object file: No such file or directory")


def test_check_explains_a_torchaudio_build_mismatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] == "TTS"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NativeLibMissing(), *sys.meta_path])
    with pytest.raises(AlignDataError, match=r"libc10_cuda.so.*torchaudio built for your torch.*installed-tts"):
        CoquiEngine(str(tmp_path / "model.pth"), str(tmp_path / "config.json")).check()


def test_check_names_a_missing_model_file(tmp_path: Path) -> None:
    pytest.importorskip("TTS")
    with pytest.raises(AlignDataError, match="model.pth"):
        CoquiEngine(str(tmp_path / "model.pth"), str(tmp_path / "config.json")).check()


def test_tiny_model_layout(single: CoquiEngine, multi: CoquiEngine) -> None:
    assert single.model_path.name == "model.pth" and single.config_path.name == "config.json"
    assert (multi.model_path.parent / "speaker_ids.json").is_file()


def test_single_speaker_synthesizes_float32_at_config_rate(single: CoquiEngine) -> None:
    audio, rate = single.synthesize(SENTENCE, seed=0)
    assert rate == TINY_SAMPLE_RATE == single.sample_rate
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.isfinite(audio).all() and 1e-3 < np.max(np.abs(audio)) <= 1.0
    assert audio.size < 10 * rate  # coqui's trailing 10000-sample pad is trimmed, nothing absurd


def test_single_speaker_voice_is_the_model_folder(single: CoquiEngine) -> None:
    assert single.voices() == [{"id": "tiny-vits", "gender": "unknown", "accent": "unknown", "language": "en"}]
    audio, _ = single.synthesize("hello", speaker="tiny-vits", seed=0)
    assert audio.size > 0
    with pytest.raises(RecordError) as err:
        single.synthesize("hello", speaker="ana")
    assert err.value.kind == "tts_bad_params"


def test_multi_speaker_voices_and_timbre(multi: CoquiEngine) -> None:
    assert [v["id"] for v in multi.voices()] == SPEAKERS
    assert {v["gender"] for v in multi.voices()} == {"unknown"}
    outputs = [multi.synthesize(SENTENCE, speaker=name, seed=7)[0] for name in SPEAKERS]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert outputs[i].shape != outputs[j].shape or not np.allclose(outputs[i], outputs[j])


def test_multi_speaker_rejects_unknown_or_missing_speaker(multi: CoquiEngine) -> None:
    for speaker in ("zed", None):
        with pytest.raises(RecordError) as err:
            multi.synthesize(SENTENCE, speaker=speaker)
        assert err.value.kind == "tts_bad_params"


def test_seed_makes_output_identical_and_leaves_global_rng(multi: CoquiEngine) -> None:
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = multi.synthesize(SENTENCE, speaker="ben", seed=5)
    b, _ = multi.synthesize(SENTENCE, speaker="ben", seed=5)
    assert torch.rand(1) == before  # the seeded calls forked the generator instead of consuming it
    c, _ = multi.synthesize(SENTENCE, speaker="ben", seed=6)
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)  # VITS samples noise: the seed matters


def test_speed_shortens_audio(multi: CoquiEngine) -> None:
    normal, _ = multi.synthesize(SENTENCE, speaker="ana", seed=1)
    fast, _ = multi.synthesize(SENTENCE, speaker="ana", seed=1, speed=2.0)
    assert fast.size < 0.7 * normal.size
    assert multi._tts.synthesizer.tts_model.length_scale == 1  # restored after the call
    with pytest.raises(RecordError) as err:
        multi.synthesize(SENTENCE, speaker="ana", speed=0)
    assert err.value.kind == "tts_bad_params"


@pytest.mark.parametrize("text", ["", "   ", "123 456", "你好"])
def test_unspeakable_text_is_a_silent_record(multi: CoquiEngine, text: str) -> None:
    with pytest.raises(RecordError) as err:
        multi.synthesize(text, speaker="ana")
    assert err.value.kind == "tts_silent"


def test_silent_model_output_is_a_record_error(single: CoquiEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(single._tts, "tts", lambda text, **kw: [0.0] * 22050)
    with pytest.raises(RecordError) as err:
        single.synthesize(SENTENCE)
    assert err.value.kind == "tts_silent"


def test_same_seed_builds_same_weights(tmp_path: Path) -> None:
    pytest.importorskip("TTS")
    import torch

    a, _ = build_tiny_vits(tmp_path / "a")
    b, _ = build_tiny_vits(tmp_path / "b")
    wa, wb = torch.load(a)["model"], torch.load(b)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
