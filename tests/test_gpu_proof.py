"""benchmarks/gpu_proof.py: its figures, its build config, its random-init model folders, and the local runner's path
where Ray cannot be imported (as on the GPU machine, whose image has no Ray)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import gpu_proof  # noqa: E402
from benchmarks.bench_train import log_speed  # noqa: E402
from benchmarks.gpu_proof_figures import stage_rates  # noqa: E402

NO_RAY = "import sys\nsys.modules['ray'] = None  # `import ray` raises ModuleNotFoundError, find_spec gives None\n"


def _sidecar(shard_id: int, audio: float, seconds: dict, usage: dict | None = None) -> dict:
    return {"shard_id": shard_id, "rows": 10, "audio_seconds": audio, "seconds": seconds,
            "stages": {"targets": {"usage": usage or {}}}}


def test_stage_rates_per_gpu_hour_over_the_shards_after_the_first():
    sidecars = [  # out of order on purpose; shard 0 holds the model loads
        _sidecar(1, 360.0, {"tts": 36.0, "quality": 3.6, "targets": 7.2, "source": 0.0},
                 {"calls": 30, "tokens_in": 9000, "tokens_out": 1200}),
        _sidecar(0, 360.0, {"tts": 36.0, "quality": 30.0, "targets": 60.0, "source": 0.0},
                 {"calls": 30, "tokens_in": 9000, "tokens_out": 1200}),
    ]
    rates = stage_rates(sidecars, gpu=True)
    assert rates["shards"] == 2 and rates["rows"] == 20 and rates["audio_hours"] == 0.2
    assert list(rates["stages"]) == ["source", "tts", "quality", "targets"]  # pipeline order
    quality, tts = rates["stages"]["quality"], rates["stages"]["tts"]
    assert quality["device"] == "GPU" and quality["unit"] == "hours of speech per GPU-hour"
    assert quality["steady_speech_h_per_h"] == 100.0  # 360 s of speech in 3.6 s
    assert quality["speech_h_per_h"] == round(720 / 33.6, 2)
    assert tts["device"] == "CPU" and tts["steady_speech_h_per_h"] == 10.0 and "worker-hour" in tts["unit"]
    assert rates["stages"]["source"]["speech_h_per_h"] is None  # no seconds: no rate, no division by zero
    llm = rates["llm"]
    assert llm["calls"] == 60 and llm["tokens_out_per_s"] == round(2400 / 67.2, 1)
    assert llm["formula_speech_h_per_h"] == round(2400 / 67.2 * 3600 / 16000, 2)
    assert stage_rates(sidecars, gpu=False)["stages"]["quality"]["device"] == "CPU"
    assert stage_rates(sidecars, gpu=True, tts_on_gpu=True)["stages"]["tts"]["device"] == "GPU"


def test_train_speed_leaves_the_first_step_out():
    log = [{"seconds": 9.0, "tokens": 100, "recipes": {"continuation": 4}},
           {"seconds": 0.5, "tokens": 60, "recipes": {"continuation": 2, "interleaved": 2}},
           {"seconds": 0.5, "tokens": 40, "recipes": {"mtbi": 4}}]
    assert log_speed(log) == {"timed_steps": 2, "s_per_step": 0.5, "examples_per_s": 8.0, "tokens_per_s": 100.0}
    assert log_speed(log[:1])["s_per_step"] == 9.0


def test_the_overrides_make_a_valid_demo_build_config(tmp_path):
    from align_data.config import load_build_config

    voices = gpu_proof.voice_pool(hibari=True, espeak=True, kokoro_cuda=False)
    corpus = tmp_path / 'a "quoted" dir' / "corpus.txt"
    overrides = gpu_proof.build_overrides(corpus, tmp_path / "gemma", tmp_path / "whisper", voices, gpu_proof.Sizes())
    config = load_build_config(ROOT / "configs/demo.toml", overrides)
    assert config.sources[0].path == str(corpus) and config.runner.kind == "local"
    assert config.llm.backend == "transformers" and config.llm.model == str(tmp_path / "gemma")
    assert config.llm.batch_size == 64 and config.llm.dtype == "auto"  # bf16 on the GPU
    assert config.quality.enabled and config.quality.model == str(tmp_path / "whisper")
    assert config.quality.wer_threshold >= 1e9 and config.quality.max_repairs == 0 and config.quality.target_filters == []
    assert [v.backend for v in config.tts.voices] == ["hibari", "espeak", "espeak"]
    with_kokoro = gpu_proof.build_overrides(corpus, tmp_path, tmp_path, gpu_proof.voice_pool(False, False, True),
                                            gpu_proof.Sizes(), kokoro_device="cuda")
    kokoro = load_build_config(ROOT / "configs/demo.toml", with_kokoro).tts
    assert kokoro.kokoro.device == "cuda" and {v.backend for v in kokoro.voices} == {"kokoro"}
    assert tomllib.loads("v = " + gpu_proof.toml_value({"a": ["x\\y", 1.5, True]}))["v"] == {"a": ["x\\y", 1.5, True]}


def test_kokoro_only_joins_on_the_cuda_provider():
    assert gpu_proof.voice_pool(hibari=False, espeak=False, kokoro_cuda=False) == []
    assert [v["backend"] for v in gpu_proof.voice_pool(True, False, False)] == ["hibari"]
    assert gpu_proof.kokoro_provider({"kokoro_installed": True, "onnxruntime_providers": ["CPUExecutionProvider"]}) \
        == {"used": False, "why": "this onnxruntime has no CUDA provider (['CPUExecutionProvider'])"}


def _tiny_bundle(root: Path) -> Path:
    """A bundle like `prepare` writes, of tiny configs (no prepared model needed)."""
    from tokenizers import Tokenizer, models
    from transformers import Gemma3TextConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor

    gemma, whisper = root / "models" / "gemma", root / "models" / "whisper"
    gemma.mkdir(parents=True)
    whisper.mkdir(parents=True)
    (gemma / "config.json").write_text(Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16).to_json_string())
    (gemma / "generation_config.json").write_text('{"eos_token_id": [1, 106]}')
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "hello"])}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                        pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")
    tokenizer.save_pretrained(root / "tok")
    (gemma / "tokenizer_config.json").write_bytes((root / "tok" / "tokenizer_config.json").read_bytes())
    (gemma / "tokenizer.json.gz").write_bytes(gzip.compress((root / "tok" / "tokenizer.json").read_bytes()))
    (whisper / "config.json").write_text(WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100, pad_token_id=99, bos_token_id=99, eos_token_id=99,
        decoder_start_token_id=98).to_json_string())
    (whisper / "generation_config.json").write_text('{"lang_to_id": {"<|en|>": 50}, "is_multilingual": true}')
    (whisper / "preprocessor_config.json").write_text(WhisperFeatureExtractor(feature_size=80).to_json_string())
    (whisper / "tokenizer_config.json").write_text("{}")
    (whisper / "tokenizer.json.gz").write_bytes(gzip.compress(b'{"not": "read here"}'))
    return root


def test_random_model_folders_load_like_prepared_ones(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperForConditionalGeneration

    bundle = _tiny_bundle(tmp_path / "bundle")
    info = gpu_proof.make_random_models(bundle, tmp_path / "models", tiny=False)
    gemma, whisper = Path(info["gemma"]["folder"]), Path(info["whisper"]["folder"])
    lm = AutoModelForCausalLM.from_pretrained(gemma)
    assert type(lm).__name__ == info["gemma"]["architecture"] == "Gemma3ForCausalLM"
    assert sum(p.numel() for p in lm.parameters()) == info["gemma"]["params"]
    assert AutoTokenizer.from_pretrained(gemma)("hello")["input_ids"][-1] == 4  # the tokenizer, unzipped
    assert json.loads((gemma / "generation_config.json").read_text()) == {"eos_token_id": [1, 106]}
    WhisperForConditionalGeneration.from_pretrained(whisper)
    assert json.loads((whisper / "generation_config.json").read_text())["lang_to_id"] == {"<|en|>": 50}
    again = gpu_proof.make_random_models(bundle, tmp_path / "models", tiny=False)  # seeded: the same weights
    assert (gemma / "model.safetensors").read_bytes() == (Path(again["gemma"]["folder"]) / "model.safetensors").read_bytes()


def test_tiny_configs_keep_the_architecture_and_vocabulary():
    real = {"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640, "num_hidden_layers": 18,
            "layer_types": ["sliding_attention"] * 18}
    tiny = gpu_proof.tiny_config("gemma", real)
    assert tiny["vocab_size"] == 262144 and tiny["model_type"] == "gemma3_text"
    assert tiny["hidden_size"] == 64 and len(tiny["layer_types"]) == tiny["num_hidden_layers"] == 2
    assert gpu_proof.tiny_config("whisper", {"vocab_size": 51865, "d_model": 512})["d_model"] == 64


def test_sizes_come_from_flags_then_environment(monkeypatch):
    monkeypatch.setenv("GPU_PROOF_DOCS", "12")
    monkeypatch.setenv("GPU_PROOF_BUDGET_S", "200")
    args = type("Args", (), {**{f: None for f in gpu_proof.Sizes.__dataclass_fields__}, "cpu": False, "steps": 50})
    sizes = gpu_proof._sizes(args)
    assert (sizes.docs, sizes.budget_s, sizes.steps, sizes.llm_batch) == (12, 200.0, 50, 64)
    assert gpu_proof._sizes(type("Args", (args,), {"cpu": True, "steps": None})).steps == gpu_proof.CPU_SIZES.steps


def test_the_checkout_leaves_room_for_the_bundle_in_one_call():
    try:
        tree = gpu_proof.travel_mib(ROOT, [])
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert tree < 16, f"the working tree alone is {tree:.1f} MiB of the {gpu_proof.TRAVEL_LIMIT_MIB} MiB a call carries"


def _no_ray_env(tmp_path: Path) -> dict:
    """This interpreter's environment with Ray made unimportable in every process started from it."""
    blocker = tmp_path / "no_ray"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_RAY)
    path = os.pathsep.join([str(blocker), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_the_local_runner_builds_where_ray_cannot_be_imported(tmp_path, corpus_file):
    env = _no_ray_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "ray" in probe.stderr  # the blocker works
    voices = gpu_proof.voice_pool(hibari=False, espeak=True, kokoro_cuda=False)
    sets = [f"sources.0.path={json.dumps(str(corpus_file))}", "interleave.task_weights={ interleaved = 1.0 }",
            f"tts.voices={gpu_proof.toml_value(voices)}", "shards.docs_per_shard=2"]
    result = subprocess.run([sys.executable, "-m", "align_data.cli", "build", str(ROOT / "configs/demo.toml"),
                             "--out", str(tmp_path / "out"), "--runner", "local",
                             *(a for s in sets for a in ("--set", s))],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows"] > 0 and manifest["complete_shards"] == manifest["planned_shards"] == 2


@pytest.mark.slow
def test_the_proof_runs_on_the_cpu_without_ray(tmp_path):
    """`gpu_proof.py run --cpu`: tiny random-init models of the prepared architectures, the build CLI and the
    trainer, with Ray unimportable; the summary has every stage and the training figures."""
    from align_data.models.gemma import gemma_dir, is_prepared
    from align_data.models.whisper import whisper_dir

    if not (is_prepared(gemma_dir()) and (whisper_dir() / "config.json").is_file()):
        pytest.skip("the embedded models are not prepared (align-data prepare)")
    gpu_proof.bundle_models(tmp_path / "bundle")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_proof.py"), "run", "--cpu",
                             "--bundle", str(tmp_path / "bundle"), "--out", str(tmp_path / "out"),
                             "--work", str(tmp_path / "work")],
                            cwd=ROOT, env=_no_ray_env(tmp_path), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "gpu_proof_summary.json").read_text())
    assert summary["errors"] == {} and not summary["machine"]["ray_importable"] and not summary["ray_imported"]
    assert summary["label"] == gpu_proof.CPU_LABEL and summary["models"]["gemma"]["tiny"]
    build = summary["build"]
    assert build["rows"] > 0 and {"tts", "quality", "targets", "paralinguistics"} <= set(build["stages"])
    assert build["llm"]["calls"] > 0 and build["stages"]["targets"]["device"] == "CPU"
    assert build["llm"]["target_models"] == ["gemma"]  # fp32 on the CPU (on a GPU: "gemma bfloat16")
    train = summary["train"]
    assert train["steps"] == gpu_proof.CPU_SIZES.steps and train["s_per_step"] > 0 and train["peak_gpu_mib"] is None
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "build.log", "build_manifest.json", "gpu_proof_summary.json", "train_log.jsonl"]
