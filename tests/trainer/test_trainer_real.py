"""Two training steps with the real prepared Whisper-base and Gemma 3 270M on a hand-made espeak-ng build."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from align_data.trainer import TrainConfig, load_adapter, train


@pytest.mark.slow
def test_two_steps_with_the_embedded_models(tiny_build: Path, tmp_path: Path) -> None:
    result = train(tiny_build, tmp_path, TrainConfig(steps=2, batch_size=2, threads=2), progress=False)
    assert result["trainable_params"] == 8_196_992  # whisper-base (512) → Gemma 3 270M (640)
    assert len(result["losses"]) == 2 and all(math.isfinite(x) and 0 < x < 20 for x in result["losses"])
    adapter = load_adapter(tmp_path)
    assert (adapter.in_dim, adapter.out_dim) == (512, 640)
    assert 0.9 < float(adapter.out_scale) < 1.2  # Gemma's scaled token embeddings have RMS ~1.03


@pytest.mark.slow
def test_eval_with_the_embedded_models(tiny_build: Path, tmp_path: Path) -> None:
    """Two steps, then eval: finite losses from speech and text, the untrained baseline, real responses, report."""
    import json

    from align_data.trainer.evaluate import evaluate
    from align_data.trainer.report import REPORT_DIR, REPORT_FILE, write_report

    train(tiny_build, tmp_path, TrainConfig(steps=2, batch_size=2, threads=2, save_every=2), progress=False)
    result = evaluate(tiny_build, tmp_path, splits=None, generate=2, max_new_tokens=12, batch_size=2,
                      progress=False)
    assert list(result["splits"]) == ["train"] and result["examples"] == 4
    for key in ("speech_loss", "text_loss", "baseline_speech_loss"):
        assert math.isfinite(result[key]) and 0 < result[key] < 20, (key, result[key])
    # Gemma reads the transcripts as text: its loss on the hand-written targets is far below that of two-step speech.
    assert result["text_loss"] < result["speech_loss"]
    [continuation, interleaved] = result["generations"]
    assert continuation["task"] == "continuation" and interleaved["task"] == "interleaved"
    assert continuation["text"] and "\n" not in continuation["text"]  # Gemma continues the transcript, one line
    pair = result["alignment"]["speech_vs_text"]
    assert 0 <= pair["bleu"] <= 100 and 0 <= pair["chrf"] <= 100 and -1 <= pair["cosine"] <= 1 + 1e-6
    write_report(result, tmp_path)
    assert json.loads((tmp_path / REPORT_DIR / REPORT_FILE).read_text())["train"]["steps"] == 2
