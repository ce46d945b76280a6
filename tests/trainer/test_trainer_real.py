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
