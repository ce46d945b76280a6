"""Data-parallel training under torchrun (gloo on CPU): two processes equal one process running both shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from align_data.errors import AlignDataError
from align_data.trainer import TrainConfig, train


def test_torchrun_two_processes_equal_one_with_grad_accum(tiny_build: Path, tiny_models: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    whisper, llm = tiny_models
    settings = {"whisper": str(whisper), "llm": str(llm), "threads": 1, "steps": 3, "batch_size": 1, "seed": 1,
                "lr": 3e-3, "kl_weight": 0.5}
    (tmp_path / "train.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "align_data.cli", "train", str(tiny_build), "--out", str(tmp_path / "two"),
               "--config", str(tmp_path / "train.toml")]
    run = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         check=False, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    train(tiny_build, tmp_path / "one", TrainConfig(**settings, grad_accum=2), progress=False)

    def log(name: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]

    two, one = log("two"), log("one")
    assert [line["examples"] for line in two] == [line["examples"] for line in one]  # same micro-batches per step
    assert all(len(line["examples"]) == 2 for line in two)
    for a, b in zip(two, one, strict=True):
        assert a["tokens"] == b["tokens"]
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["kl"] - b["kl"]) < 1e-5, (a, b)
    adapters = [load_file(str(tmp_path / name / "adapter.safetensors")) for name in ("two", "one")]
    for key, value in adapters[0].items():
        torch.testing.assert_close(value, adapters[1][key], rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "two" / "trainer_state.json").read_text())["world_size"] == 2
    with pytest.raises(AlignDataError, match="trained by 2 process.*this run has 1"):
        train(tiny_build, tmp_path / "two", TrainConfig(**{**settings, "steps": 4}), resume=True, progress=False)
