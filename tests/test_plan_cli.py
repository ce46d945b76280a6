"""``align-data plan``: the shard plan without running it, and the estimate from measured rates."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from align_data.cli import app
from align_data.config import load_build_config
from align_data.pipeline.estimate import estimate, rates_from_manifest, summarize_plan
from align_data.pipeline.plan import plan_shards
from tests.conftest import ESPEAK_VOICES

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs/demo.toml"
DEMO_BUILD = REPO / "tests/fixtures/demo_build"  # the manifest of a finished `make demo`
DEMO_WALL_S = 253.0  # that build's wall time (Ray, 2 workers of 1 CPU)


def _run(*args: str) -> str:
    """The command's stdout (progress bars go to stderr)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_plan_shows_the_shards_without_running_them(tmp_path):
    out = json.loads(_run("plan", str(DEMO), "--json"))["plan"]
    assert out["shards"] == 10 and out["docs"] == 40 and not out["estimated"]
    assert out["sources"][0] | {"bytes": None} == {"name": "demo", "reader": "txt", "files": 1, "bytes": None,
                                                   "shards": 10, "docs": 40, "estimated": False, "problem": None}
    assert "demo" in _run("plan", str(DEMO), "--limit", "6")
    assert json.loads(_run("plan", str(DEMO), "--limit", "6", "--json"))["plan"]["docs"] == 6


def test_plan_help_names_its_options():
    text = _run("plan", "--help")
    for word in ("--estimate", "--cpus", "--gpus", "--rates", "--limit", "bottleneck"):
        assert word in text, word


def test_the_estimate_of_the_demo_is_within_a_quarter_of_its_measured_build_time():
    out = json.loads(_run("plan", str(DEMO), "--estimate", "--rates", str(DEMO_BUILD), "--json"))["estimate"]
    assert abs(out["wall_s"] - DEMO_WALL_S) <= 0.25 * DEMO_WALL_S, out["wall_s"]
    assert out["rows"] == 194 and out["llm_calls"] == 231 and out["cpu_workers"] == 2
    assert out["bottleneck"].startswith("targets")
    text = _run("plan", str(DEMO), "--estimate", "--rates", str(DEMO_BUILD))
    assert "bottleneck" in text and "wall time" in text


def test_more_workers_and_gpus_move_the_bottleneck():
    cfg = load_build_config(DEMO, ["runner.layout=split", "runner.llm.num_gpus=1"])
    manifest = json.loads((DEMO_BUILD / "manifest.json").read_text())
    plan = summarize_plan(cfg, plan_shards(cfg), 0.0)
    rates = rates_from_manifest(manifest, "demo")
    two = estimate(cfg, plan, rates)
    cluster = estimate(cfg, plan, rates, cpus=64, gpus=8)
    assert cluster.cpu_workers == 64 and cluster.gpu_workers == 8
    assert cluster.wall_s < two.wall_s
    # 10 shards on 64 CPU workers: one round of shards; the LLM on 8 GPUs (at the CPU rate measured) is slower
    assert cluster.bottleneck.startswith("targets") and "llm (GPU)" in cluster.bottleneck
    gpus_galore = estimate(cfg, plan, rates, cpus=2, gpus=64)
    assert gpus_galore.bottleneck.startswith("tts")


def test_a_pilot_build_measures_the_rates(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i} says a thing. Then it says another thing too." for i in range(6)))
    path = tmp_path / "c.toml"
    voices = "".join(f'\n[[tts.voices]]\nid = "{v["id"]}"\ngender = "{v["gender"]}"\naccent = "{v["accent"]}"\n'
                     for v in ESPEAK_VOICES[:2])
    path.write_text(f'[[sources]]\nname = "c"\npath = "{corpus}"\nformat = "txt"\n[shards]\ndocs_per_shard = 2\n'
                    '[segment]\nmin_words = 3\nmax_words = 8\n[interleave]\ntask_weights = {interleaved = 1.0}\n'
                    f'[runner]\nkind = "local"\n{voices}')
    out = json.loads(_run("plan", str(path), "--estimate", "--pilot-shards", "1", "--json"))
    assert out["estimate"]["rates_from"] == "a pilot build of 2 documents"
    assert out["estimate"]["docs"] == 6 and out["estimate"]["segments"] > 0 and out["estimate"]["audio_hours"] > 0
    assert not list((tmp_path / "tmp").iterdir())  # the pilot's folder is gone
