"""Training runs on tiny models: checkpoint contents, exact resume, refusals, and that the loss goes down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from align_data.errors import AlignDataError
from align_data.trainer import TrainConfig, load_adapter, train
from align_data.trainer.loop import lr_at


@pytest.fixture
def config(tiny_models: tuple[Path, Path]) -> TrainConfig:
    whisper, llm = tiny_models
    return TrainConfig(steps=2, whisper=str(whisper), llm=str(llm), threads=1, save_every=2, seed=1)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def test_two_steps_write_an_adapter_only_checkpoint(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    result = train(tiny_build, tmp_path, config, progress=False)
    assert result["steps"] == 2 and len(result["losses"]) == 2 and result["final_loss"] == result["losses"][-1]
    assert result["examples"] == 4 and result["counts"]["skipped_no_targets"] == 1
    tensors = _tensors(tmp_path / "adapter.safetensors")
    assert {k.split(".")[0] for k in tensors} == {"convs", "proj", "norm", "out_scale"}
    assert result["trainable_params"] == sum(v.numel() for k, v in tensors.items() if k != "out_scale")
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["config"]["seed"] == 1 and "torch" in state["rng"]
    assert torch.load(tmp_path / "optimizer.pt", weights_only=True)["step"] == 2
    lines = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert {"loss", "lr", "seconds", "grad_norm", "tokens"} <= set(lines[0])
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_matches_an_uninterrupted_run(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    straight = train(tiny_build, tmp_path / "straight", config.model_copy(update={"steps": 4}), progress=False)
    first = train(tiny_build, tmp_path / "resumed", config, progress=False)
    second = train(tiny_build, tmp_path / "resumed", config.model_copy(update={"steps": 4}), resume=True,
                   progress=False)
    assert second["start_step"] == 2 and second["steps"] == 4
    assert first["losses"] + second["losses"] == straight["losses"]
    a = _tensors(tmp_path / "straight" / "adapter.safetensors")
    b = _tensors(tmp_path / "resumed" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [1, 2, 3, 4]


def test_resume_drops_log_lines_after_the_checkpoint(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    train(tiny_build, tmp_path, config.model_copy(update={"steps": 3}), progress=False)  # saved at 2 and 3
    log = tmp_path / "train_log.jsonl"
    log.write_text(log.read_text() + json.dumps({"step": 4, "loss": 0.0}) + "\n")  # a step lost in a crash
    train(tiny_build, tmp_path, config.model_copy(update={"steps": 4}), resume=True, progress=False)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


def test_refusals(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    with pytest.raises(AlignDataError, match="no checkpoint to resume"):
        train(tiny_build, tmp_path, config, resume=True, progress=False)
    train(tiny_build, tmp_path, config.model_copy(update={"steps": 1}), progress=False)
    with pytest.raises(AlignDataError, match="already holds a checkpoint"):
        train(tiny_build, tmp_path, config, progress=False)
    with pytest.raises(AlignDataError, match="lr: 0.001 → 0.01"):
        train(tiny_build, tmp_path, config.model_copy(update={"lr": 1e-2}), resume=True, progress=False)
    with pytest.raises(AlignDataError, match="not a HF model folder"):
        train(tiny_build, tmp_path / "x", config.model_copy(update={"llm": str(tmp_path)}), progress=False)


def test_loaded_adapter_reproduces_the_trained_one(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    train(tiny_build, tmp_path, config, progress=False)
    adapter = load_adapter(tmp_path)
    assert (adapter.in_dim, adapter.out_dim) == (64, 64)
    saved = _tensors(tmp_path / "adapter.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in adapter.state_dict().items())
    with pytest.raises(AlignDataError, match="not a readable adapter"):
        load_adapter(tmp_path / "missing")


def test_warmup_is_linear_then_constant() -> None:
    cfg = TrainConfig(lr=1.0, warmup=3)
    assert [lr_at(cfg, s) for s in range(1, 6)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_overfitting_two_examples_lowers_the_loss(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    cfg = config.model_copy(update={"steps": 30, "lr": 3e-3, "tasks": ["continuation", "description"],
                                    "save_every": 30, "bucket_batches": 1})
    result = train(tiny_build, tmp_path, cfg, progress=False)
    losses = result["losses"]
    assert result["examples"] == 2
    # A random 2-layer LM is hard to steer (real models went 5.3 → 0.004 in 40 steps); tiny ones drop ~20%.
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    assert losses[-1] < min(losses[:10]), losses


def test_evaluate_compares_speech_and_transcript_input(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    from align_data.trainer.evaluate import evaluate

    train(tiny_build, tmp_path, config, progress=False)
    result = evaluate(tiny_build, tmp_path, batch_size=3, device="cpu", progress=False)
    assert result["step"] == 2 and result["examples"] == 4
    assert set(result["per_task"]) == {"continuation", "description", "interleaved"}
    assert result["gap"] == pytest.approx(result["speech_loss"] - result["text_loss"])
    assert result["tokens"] == sum(t["tokens"] for t in result["per_task"].values())
    assert result["speech_loss"] != result["text_loss"]
    with pytest.raises(AlignDataError, match="no trainer_state.json"):
        evaluate(tiny_build, tmp_path / "nothing", progress=False)
