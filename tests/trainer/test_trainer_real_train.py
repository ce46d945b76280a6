"""Training options with the real prepared Whisper-base and Gemma 3 270M: the Q-Former with KL, accumulation and
a cosine schedule, on the hand-made espeak-ng build."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from align_data.trainer import TrainConfig, load_adapter, train
from align_data.trainer.adapters import QFormerAdapter


@pytest.mark.slow
def test_qformer_with_kl_and_accumulation_on_the_embedded_models(tiny_build: Path, tmp_path: Path) -> None:
    config = TrainConfig(steps=2, batch_size=1, grad_accum=2, threads=2, adapter="qformer", kl_weight=0.5,
                         schedule="cosine", lr=1e-3)
    result = train(tiny_build, tmp_path, config, progress=False)
    # 64 queries × 512 + 2 decoder layers of width 512 (self- and cross-attention, 2048 FFN) + LayerNorm
    # + Linear 512 → 640 + LayerNorm
    assert result["trainable_params"] == 8_771_456
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [len(line["examples"]) for line in log] == [2, 2]
    assert all(math.isfinite(line["loss"]) and 0 < line["loss"] < 20 and 0 < line["kl"] < 20 for line in log), log
    assert [line["lr"] for line in log] == pytest.approx([1e-3, 1e-4])  # cosine from the peak to its floor
    adapter = load_adapter(tmp_path)
    assert isinstance(adapter, QFormerAdapter) and (adapter.in_dim, adapter.out_dim, adapter.queries) == (512, 640, 64)
