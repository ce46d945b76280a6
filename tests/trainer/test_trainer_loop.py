"""Training runs on tiny models: checkpoint contents, exact resume, refusals, and that the loss goes down."""

from __future__ import annotations

import json
import math
import re
import sys
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


@pytest.mark.parametrize("settings", [
    {},
    {"grad_accum": 2, "bucket_batches": 3, "shuffle_window": 1, "schedule": "cosine", "decay_steps": 4,
     "warmup": 1, "task_weights": {"continuation": 1, "interleaved": 2, "description": 1}},
    {"adapter": "qformer", "qformer_queries": 4, "qformer_layers": 1, "qformer_heads": 4, "kl_weight": 0.5},
], ids=["plain", "accumulate-bucket-mix-cosine", "qformer-kl"])
def test_resume_matches_an_uninterrupted_run(tiny_build: Path, tmp_path: Path, config: TrainConfig,
                                             settings: dict) -> None:
    config = config.model_copy(update=settings)
    straight = train(tiny_build, tmp_path / "straight", config.model_copy(update={"steps": 4}), progress=False)
    torch.seed()  # other code in the process moved torch's global generator: a run starts from its own seed
    first = train(tiny_build, tmp_path / "resumed", config, progress=False)
    torch.seed()
    second = train(tiny_build, tmp_path / "resumed", config.model_copy(update={"steps": 4}), resume=True,
                   progress=False)
    assert second["start_step"] == 2 and second["steps"] == 4
    assert first["losses"] + second["losses"] == straight["losses"]
    a = _tensors(tmp_path / "straight" / "adapter.safetensors")
    b = _tensors(tmp_path / "resumed" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("adapter.safetensors", "trainer_state.json"):  # the same bytes (optimizer.pt: torch.save stamps
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    moments = [torch.load(tmp_path / run / "optimizer.pt", weights_only=True)["optimizer"]["state"]
               for run in ("straight", "resumed")]  # each file with an id of its own)
    assert all(torch.equal(moments[0][p][k], moments[1][p][k]) for p in moments[0] for k in moments[0][p])
    log = [json.loads(line) for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    straight_log = [json.loads(line) for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [1, 2, 3, 4]
    assert [line["examples"] for line in log] == [line["examples"] for line in straight_log]  # same data order
    assert all(len(line["examples"]) == config.batch_size * config.grad_accum for line in log)


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


def test_cosine_decays_from_the_peak_to_the_floor() -> None:
    cfg = TrainConfig(lr=1.0, warmup=1, schedule="cosine", steps=6, min_lr_ratio=0.1)
    values = [lr_at(cfg, s) for s in range(1, 9)]
    # warmup, peak at step 2, half-way (0.1 + 0.9/2) at step 4, floor at step 6 and after
    assert values == pytest.approx([0.5, 1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55,
                                    0.1 + 0.45 * (1 - math.cos(math.pi / 4)), 0.1, 0.1, 0.1])
    assert lr_at(cfg.model_copy(update={"decay_steps": 10}), 6) > 0.1


def test_resume_refuses_a_moved_cosine_horizon(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    cosine = config.model_copy(update={"schedule": "cosine"})
    train(tiny_build, tmp_path, cosine, progress=False)
    with pytest.raises(AlignDataError, match="set decay_steps=2"):
        train(tiny_build, tmp_path, cosine.model_copy(update={"steps": 4}), resume=True, progress=False)
    result = train(tiny_build, tmp_path, cosine.model_copy(update={"steps": 4, "decay_steps": 2}), resume=True,
                   progress=False)
    assert result["steps"] == 4


def test_kl_term_is_logged_and_falls_when_trained(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    # Weighted 10×: on the tiny random LM the target NLL (~6) otherwise outweighs a KL of ~0.5 (seen: 0.49 → 0.06).
    cfg = config.model_copy(update={"steps": 16, "lr": 3e-3, "kl_weight": 10.0, "save_every": 16,
                                    "tasks": ["continuation", "description"], "bucket_batches": 1})
    train(tiny_build, tmp_path, cfg, progress=False)
    kl = [json.loads(line)["kl"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert all(k > 0 for k in kl)
    assert sum(kl[-3:]) / 3 < 0.5 * sum(kl[:3]) / 3, kl


def test_tensorboard_events_mirror_the_log(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_build, tmp_path, config.model_copy(update={"metrics": ["jsonl", "tensorboard"]}), progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    scalars = events.Scalars("train/loss")
    assert [e.step for e in scalars] == [1, 2] and [e.value for e in scalars] == pytest.approx(losses)
    assert {"train/lr", "train/grad_norm", "train/examples_per_s"} <= set(events.Tags()["scalars"])


def test_missing_tensorboard_is_named(tiny_build: Path, tmp_path: Path, config: TrainConfig,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(AlignDataError, match="`tensorboard` package is not installed"):
        train(tiny_build, tmp_path, config.model_copy(update={"metrics": ["jsonl", "tensorboard"]}), progress=False)
    assert not (tmp_path / "trainer_state.json").exists()


def test_train_command_reads_a_toml_config(tiny_build: Path, tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    from typer.testing import CliRunner

    from align_data.cli import app

    whisper, llm = tiny_models
    (tmp_path / "train.toml").write_text(
        f'[train]\nwhisper = "{whisper}"\nllm = "{llm}"\nthreads = 1\nsteps = 5\nadapter = "qformer"\n'
        'qformer_queries = 4\nqformer_heads = 4\ngrad_accum = 2\n[train.task_weights]\ninterleaved = 1.0\n')
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(app, ["train", str(tiny_build), "--out", str(out), "--config",
                                      str(tmp_path / "train.toml"), "--steps", "2", "--set", "lr=0.002"])
    assert result.exit_code == 0, result.output
    assert re.search(r"peak memory [1-9][0-9]* MiB resident;", " ".join(result.output.split())), result.output
    saved = json.loads((out / "trainer_state.json").read_text())["config"]
    assert (saved["steps"], saved["lr"], saved["adapter"], saved["grad_accum"]) == (2, 0.002, "qformer", 2)
    assert saved["task_weights"] == {"interleaved": 1.0} and load_adapter(out).queries == 4
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(line["recipes"] == {"interleaved": 4} for line in log)
    (tmp_path / "bad.toml").write_text("adapter = 'lstm'\n")
    bad = CliRunner().invoke(app, ["train", str(tiny_build), "--out", str(out), "-c", str(tmp_path / "bad.toml")])
    assert bad.exit_code == 1 and "adapter" in bad.output


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


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("configs").glob("*train*.toml")),
                         ids=lambda p: p.name)
def test_shipped_train_configs_load(path: Path) -> None:
    from align_data.trainer.config import load_train_config

    assert load_train_config(path, {}).steps >= 1  # validation errors would raise


def test_encoder_cache_changes_no_step(tiny_build: Path, tmp_path: Path, config: TrainConfig) -> None:
    """Training with the encoder's outputs cached (read again once the stream wraps) steps exactly as without."""
    steps = config.model_copy(update={"steps": 6, "save_every": 6})
    cached = train(tiny_build, tmp_path / "cached", steps, progress=False)
    plain = train(tiny_build, tmp_path / "plain", steps.model_copy(update={"encoder_cache_mb": 0}), progress=False)
    assert cached["losses"] == plain["losses"] and plain["encoder_cache"] is None
    assert cached["encoder_cache"]["hits"] > 0  # 6 steps of 2 went past the tiny build's examples
    assert (tmp_path / "cached" / "adapter.safetensors").read_bytes() == \
        (tmp_path / "plain" / "adapter.safetensors").read_bytes()
