"""Export fixtures: a real interleaved build (no LLM) and a hand-written build with every task and both splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from align_data.pipeline.build import build
from tests.conftest import TINY_CORPUS, make_config
from tests.export.corpora import mixed_records, write_build


@pytest.fixture(scope="session")
def mixed_build(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    corpus = root / "corpus.txt"
    corpus.write_text(TINY_CORPUS)
    return write_build(root / "build", mixed_records(), make_config(corpus))


@pytest.fixture(scope="session")
def interleaved_build(tmp_path_factory) -> Path:
    """A real build (espeak, acoustics, paralinguistics; interleaved rows need no LLM), both splits, 2 shards,
    short speech spans so rows have several clips."""
    root = tmp_path_factory.mktemp("interleaved")
    corpus = root / "corpus.txt"
    corpus.write_text(TINY_CORPUS)
    config = make_config(corpus, interleave={"task_weights": {"interleaved": 1.0}, "min_span_words": 2,
                                             "max_span_words": 3},
                         splits={"heldout_fraction": 0.4},
                         sources=[{"name": "tiny", "path": str(corpus), "format": "txt", "license": "CC0-1.0"}])
    build(config, root / "build")
    return root / "build"


@pytest.fixture(scope="session")
def exported(request, tmp_path_factory):
    """exported(build_name, fmt) → (build folder, summary, OUT); each build and export is made once per session
    and only when a test asks for it. Tests must not change these folders (copy them first)."""
    from align_data.export import export_corpus

    done: dict = {}

    def get(name: str, fmt: str):
        if (name, fmt) not in done:
            source = request.getfixturevalue(f"{name}_build")
            out = tmp_path_factory.mktemp(f"{name}-{fmt}") / "out"
            done[(name, fmt)] = (source, export_corpus(source, out, fmt), out)
        return done[(name, fmt)]

    return get
