"""Shared fixtures: tiny corpora and configs with fixed ids, isolated caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from align_data.config import build_config_from_dict, espeak_voices

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_CORPUS = """The alarm rang at seven, and the kitchen was still dark and cold.
Maya filled the kettle and waited by the window for the first light.

Rain fell all afternoon over the harbour town and its narrow streets.
Fishermen pulled their boats higher up the shingle before the tide turned.
By evening the wind had dropped and the gulls were quiet again.

Scientists measured the temperature of the lake every morning for a year.
They found that the surface warmed faster than the deep water below it.
"""


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TINY_CORPUS)
    return path


ESPEAK_VOICES = [v.model_dump(exclude_none=True) for v in espeak_voices()]
# The same pool as TOML tables, for tests that write their build config as a file.
ESPEAK_TOML = "".join(f'\n[[tts.voices]]\nbackend = "espeak"\nid = "{v["id"]}"\ngender = "{v["gender"]}"\n'
                      f'accent = "{v["accent"]}"\nlanguage = "{v["language"]}"\n' for v in ESPEAK_VOICES)


def make_config(corpus: Path, **sections):
    """A small build config over ``corpus``; keyword sections replace the defaults."""
    data = {
        "seed": 0,
        "sources": [{"name": "tiny", "path": str(corpus), "format": "txt"}],
        "segment": {"min_words": 4, "max_words": 14},
        "shards": {"docs_per_shard": 2},
        "runner": {"kind": "local"},
    }
    data.update(sections)
    # espeak-ng voices unless a test says otherwise: the default pool's natural voices are slower (tests of
    # them build with the kokoro/hibari pool they name)
    data["tts"] = {"voices": ESPEAK_VOICES, **data.get("tts", {})}
    return build_config_from_dict(data)


@pytest.fixture
def interleaved_config(corpus_file: Path):
    """All rows interleaved: the whole pipeline runs for real without the LLM."""
    return make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}})


# sidecar and manifest fields that describe a run (wall clock, LLM calls answered from the cache), not its data
RUN_FACTS = {"seconds", "created_unix", "stage_seconds", "sidecar_sha256", "usage"}


def without_run_facts(value):
    """A sidecar or manifest (parsed JSON) with the RUN_FACTS keys removed at every depth, for comparing builds."""
    if isinstance(value, dict):
        return {k: without_run_facts(v) for k, v in value.items() if k not in RUN_FACTS}
    if isinstance(value, list):
        return [without_run_facts(v) for v in value]
    return value
