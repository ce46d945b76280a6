"""Adapter training speed and memory on a build: the configured run vs one without length bucketing, and on a GPU
also vs frozen models in float32 instead of bfloat16.

Each setting trains --steps steps from the same seed into a temporary folder (the first step, which warms caches, is
not timed). Prints s/step, examples/s, target tokens/s and peak GPU memory per setting, and each
setting's speed relative to the configured run, all measured in this run.
    .venv/bin/python benchmarks/bench_train.py [BUILD] [--config configs/demo_train.toml] [--steps 12] [--set k=v ...]
BUILD defaults to demo_out (written by `make demo`); without it, an LLM-free build of 16 demo documents (interleaved
rows only) is made in a temporary folder first.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from align_data.config import apply_overrides, load_build_config
from align_data.pipeline.build import build as run_build
from align_data.trainer import train
from align_data.trainer.config import load_train_config
from align_data.trainer.checkpoint import LOG_FILE
from align_data.trainer.model import load_frozen_models, resolve_device
from align_data.trainer.report import read_train_log

ROOT = Path(__file__).resolve().parents[1]


def log_speed(log: list[dict]) -> dict:
    """s/step, examples/s and target tokens/s of a run's ``train_log.jsonl`` lines, its first step (which warms
    caches) left out when there are more."""
    timed = log[1:] or log
    seconds = sum(line["seconds"] for line in timed)
    examples = sum(sum(line["recipes"].values()) for line in timed)
    return {"timed_steps": len(timed), "s_per_step": seconds / len(timed), "examples_per_s": examples / seconds,
            "tokens_per_s": sum(line["tokens"] for line in timed) / seconds}


def _run(build: Path, config, models) -> dict:
    """Train ``config`` into a fresh folder; speed from its log."""
    with tempfile.TemporaryDirectory() as tmp:
        result = train(build, Path(tmp) / "ckpt", config, progress=False, models=models)
        log = read_train_log(Path(tmp) / "ckpt" / LOG_FILE)
    return {**log_speed(log), "final_loss": result["final_loss"], "peak_gpu_mb": result["peak_gpu_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", type=Path, help="a build folder (default: demo_out, else a small one)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/demo_train.toml")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="key=value, as `train --set`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build = args.build or (ROOT / "demo_out" if (ROOT / "demo_out/manifest.json").is_file() else None)
        if build is None:
            build = Path(tmp) / "build"
            config = load_build_config(ROOT / "configs/demo.toml", ["interleave.task_weights={ interleaved = 1.0 }"])
            run_build(config, build, runner="local", limit=16)
        elif not (build / "manifest.json").is_file():
            parser.error(f"{build} is not a finished build (no manifest.json); run `make demo` or name a build")
        _compare(build, args)


def _compare(build: Path, args: argparse.Namespace) -> None:
    """Train every setting on ``build`` and print the table."""
    fixed = {"steps": args.steps, "save_every": args.steps, "metrics": ["jsonl"]}
    base = load_train_config(args.config, apply_overrides(fixed, args.sets))
    device, _ = resolve_device(base)
    settings = {"configured": base, "no length bucketing": base.model_copy(update={"bucket_batches": 1})}
    if device.type == "cuda":
        settings["frozen models float32"] = base.model_copy(update={"dtype": "float32"})
    loaded: dict[torch.dtype, object] = {}  # frozen models per dtype, loaded once
    results = {}
    for name, config in settings.items():
        _, dtype = resolve_device(config)
        if dtype not in loaded:
            loaded[dtype] = load_frozen_models(config, device, dtype)
        results[name] = _run(build, config, loaded[dtype])
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{build}: {args.steps} steps, batch {base.batch_size} x grad_accum {base.grad_accum}, "
          f"adapter {base.adapter}, {gpu}")
    reference = results["configured"]["s_per_step"]
    for name, r in results.items():
        memory = "" if r["peak_gpu_mb"] is None else f"  peak GPU {r['peak_gpu_mb']:8.0f} MiB"
        print(f"{name:24s} {r['s_per_step']:7.3f} s/step  {r['examples_per_s']:7.2f} examples/s  "
              f"{r['tokens_per_s']:8.1f} target tokens/s  loss {r['final_loss']:.4f}{memory}  "
              f"speed vs configured {reference / r['s_per_step']:.2f}x")


if __name__ == "__main__":
    main()
