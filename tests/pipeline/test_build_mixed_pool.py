"""A build with a mixed voice pool (espeak + Piper + a coqui model loaded from a folder) records what was done."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from align_data.config import load_build_config
from align_data.pipeline.build import build
from align_data.pipeline.summary import expected_voice_shares
from align_data.pipeline.validate import validate_build
from align_data.stages.paralinguistics.stage import level, reference_levels
from tests.conftest import TINY_CORPUS

SPEAKERS = ["ana", "ben", "cleo"]
SNR_RANGE = (5.0, 25.0)
SPEED_RANGE = (0.8, 1.2)

CONFIG = f"""
seed = 3

[[sources]]
name = "tiny"
path = "corpus.txt"
format = "txt"

[segment]
min_words = 4
max_words = 14
dedup = false  # the corpus is the tiny one repeated: its repeats are rows for the pool's voices (dedup drops them across shards)

[interleave]
task_weights = {{ interleaved = 1.0 }}

[[tts.voices]]
backend = "espeak"
id = "en-us+f2"
gender = "female"
accent = "American"
language = "en-us"

[[tts.voices]]
backend = "piper"
id = "en_US-joe-medium"
gender = "male"
accent = "American"
language = "en-us"

[[tts.voices]]
backend = "coqui"
id = "*"
gender = "unknown"
accent = "unknown"
language = "en"

[tts]
speed_range = {list(SPEED_RANGE)}

[tts.coqui]
model_path = "models/tiny-vits"

[acoustics]
noise_prob = 1.0
snr_range_db = {list(SNR_RANGE)}
reverb_prob = 0.5

[shards]
docs_per_shard = 2

[runner]
kind = "local"
"""


@pytest.fixture(scope="module")
def mixed_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("piper")
    pytest.importorskip("TTS")
    from align_data.stages.tts.coqui import build_tiny_vits

    root = tmp_path_factory.mktemp("mixed")
    build_tiny_vits(root / "models" / "tiny-vits", speakers=SPEAKERS)
    (root / "corpus.txt").write_text(TINY_CORPUS * 3)  # 9 documents: enough rows to meet every backend
    (root / "build.toml").write_text(CONFIG)
    cfg = load_build_config(root / "build.toml")
    summary = build(cfg, root / "out")
    assert not summary.failed
    return root / "out", summary.manifest


def _rows(out: Path) -> list[dict]:
    return [row for path in sorted((out / "shards").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_every_backend_speaks_and_coqui_speakers_join_the_pool(mixed_build):
    out, m = mixed_build
    assert m["errors"] == 0 and m["rows"] > 0
    backends = {key.split(":", 1)[0] for key in m["voices"]}
    assert backends == {"espeak", "piper", "coqui"}
    coqui = {key.split(":", 1)[1] for key in m["voices"] if key.startswith("coqui:")}
    assert coqui <= set(SPEAKERS) and len(coqui) >= 2  # the '*' entry expanded into the model's speakers
    shares = expected_voice_shares(out)
    assert shares["backends"] == pytest.approx({"espeak": 1 / 3, "piper": 1 / 3, "coqui": 1 / 3})
    assert validate_build(out) == []


def test_voice_columns_say_what_each_backend_controlled(mixed_build):
    out, _ = mixed_build
    for row in _rows(out):
        v = row["voice"]
        assert v["emotion"] == "unknown"  # no backend here controls emotion
        if v["backend"] == "espeak":
            assert (v["voice_id"], v["gender"]) == ("en-us+f2", "female")
            assert 140 <= v["rate"] <= 200 and 25 <= v["pitch"] <= 75 and 70 <= v["volume"] <= 140
        else:
            assert SPEED_RANGE[0] <= v["rate"] <= SPEED_RANGE[1]
            assert v["pitch"] is None and v["volume"] is None
            if v["backend"] == "coqui":
                assert v["voice_id"] in SPEAKERS and v["gender"] == "unknown"
            else:
                assert (v["voice_id"], v["gender"]) == ("en_US-joe-medium", "male")


def test_measured_snr_duration_and_levels_match_the_audio(mixed_build):
    out, _ = mixed_build
    ref = reference_levels()
    rows = _rows(out)
    assert any(r["acoustics"]["c50_db"] is not None for r in rows)
    assert any(r["acoustics"]["c50_db"] is None for r in rows)
    for row in rows:
        a, p, gender = row["acoustics"], row["paralinguistics"], row["voice"]["gender"]
        assert a["noise_type"] in ("white", "pink", "brown")
        assert SNR_RANGE[0] <= a["target_snr_db"] <= SNR_RANGE[1]
        assert abs(a["snr_db"] - a["target_snr_db"]) <= 2.0
        assert p["snr_db"] == a["snr_db"] and p["c50_db"] == a["c50_db"]
        seconds = 0.0
        for clip in row["audio"]:
            samples, rate = sf.read(io.BytesIO(clip["bytes"]))
            assert rate == 16000 and samples.ndim == 1 and abs(samples).max() <= 0.99 + 1e-4
            seconds += len(samples) / rate
        assert p["duration_s"] == pytest.approx(seconds, abs=0.01)
        # levels are relative to the per-gender reference ranges of the data file
        pitch = ref["pitch"][gender]
        assert p["pitch_level"] == level(p["f0_mean_hz"], pitch["low"], pitch["high"])
        speed = ref["speed"][gender]
        assert p["speed_level"] == level(p["speech_rate_wps"], speed["low"], speed["high"])
        volume = ref["volume"][gender]
        assert p["volume_level"] == level(p["rms_dbfs"], volume["low"], volume["high"])


def test_inspect_shows_balance_against_the_configured_weights(mixed_build):
    from typer.testing import CliRunner

    from align_data.cli import app

    out, _ = mixed_build
    result = CliRunner().invoke(app, ["inspect", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "configured" in text and "coqui:*" in text and "33.3%" in text
    config = json.loads((out / "config.json").read_text())["config"]
    assert Path(config["tts"]["coqui"]["model_path"]).is_absolute()  # resolved against the config's folder
