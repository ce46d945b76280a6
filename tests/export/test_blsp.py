"""BLSP export, read as BLSP's speech_text_paired_dataset reads it: load_dataset of the jsonl, audio by path."""

from __future__ import annotations

import json

import pytest

from align_data.export import export_corpus
from tests.export.readers import blsp_items, flac_seconds, read_jsonl, source_rows


def test_one_file_per_split_and_instruction_with_readable_audio(exported, monkeypatch):
    source, summary, out = exported("mixed", "blsp")
    instructions = json.loads((out / "instructions.json").read_text())
    assert instructions == {
        "blsp-continue": "Continue the following text in a coherent and engaging style with less than 40 words.",
        "desta-hear": "What can you hear from the audio?",
        "desta-speaker": "Describe the speaker and the way they speak.",
    }
    monkeypatch.chdir(out)  # BLSP opens the audio paths from its working directory
    seen = []
    for manifest in sorted(out.glob("*/*.jsonl")):
        split, prompt_id = manifest.parent.name, manifest.stem
        for item in blsp_items(out / split, manifest.name):
            assert item["is_readable"], item["audio"]
            assert flac_seconds(item["audio"]) == pytest.approx(item["duration"], abs=1e-6)
            assert item["instruction"] == instructions[prompt_id]
            seen.append((split, prompt_id, item["row_id"], item["text"]))
    rows = {r.id: r for r in source_rows(source)}
    expected = [(r.split, t.prompt_id, r.id, t.response) for r in rows.values() if len(r.audio) == 1
                and all(s.modality == "speech" for s in r.segments) for t in r.targets]
    assert sorted(seen) == sorted(expected) and len(seen) == 5
    assert summary.totals.items == 5


def test_interleaved_and_target_less_rows_are_skipped_and_listed(exported):
    _, summary, out = exported("mixed", "blsp")
    assert summary.totals.skipped == {"not_single_clip": 2, "no_targets": 1}
    assert sorted(x["id"] for x in read_jsonl(out / "skipped.jsonl")) == ["mix-002", "mix-003", "mix-102"]
    assert summary.totals.rows_exported == 4
    assert not list(out.rglob("mix-002_*.flac"))  # no orphan audio for skipped rows


def test_absolute_paths_open_from_anywhere(mixed_build, tmp_path):
    out = tmp_path / "blsp"
    export_corpus(mixed_build, out, "blsp", ["continuation"], absolute_paths=True)
    lines = read_jsonl(out / "train" / "blsp-continue.jsonl") + read_jsonl(out / "heldout" / "blsp-continue.jsonl")
    assert len(lines) == 2
    for line in lines:
        assert line["audio"].startswith("/") and flac_seconds(line["audio"]) == line["duration"]
