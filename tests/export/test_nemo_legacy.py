"""NeMo <= 2.7 export (nemo-legacy), read as NeMo's SpeechLLM collection reads manifests: audio exists, durations
match the files."""

from __future__ import annotations

import json

import pytest

from align_data.export.nemo_manifest import AUDIO_LOCATOR
from tests.export.readers import flac_seconds, nemo_items, read_jsonl, source_rows


@pytest.mark.parametrize("build", ["mixed", "interleaved"])
def test_every_target_is_a_line_whose_audio_exists_with_its_duration(exported, build):
    source, summary, out = exported(build, "nemo-legacy")
    rows = [r for r in source_rows(source) if r.targets]
    lines = []
    for manifest in sorted(out.glob("*.jsonl")):
        if manifest.name == "skipped.jsonl":
            continue
        for item in nemo_items(manifest):
            files = item["audio_file"] if isinstance(item["audio_file"], list) else [item["audio_file"]]
            durations = item["duration"] if isinstance(item["duration"], list) else [item["duration"]]
            assert len(files) == len(durations)
            for path, seconds in zip(files, durations, strict=True):
                assert path.is_file(), path
                assert flac_seconds(path) == pytest.approx(seconds, abs=1e-6)
            assert manifest.stem.split("_")[0] == item["line"]["split"]
            lines.append(item)
    expected = [(r.id, t.prompt_id, t.response) for r in rows for t in r.targets]
    assert sorted((i["line"]["row_id"], i["line"]["prompt_id"], i["answer"]) for i in lines) == sorted(expected)
    assert summary.totals.items == len(expected)
    clip_seconds = sum(flac_seconds(p) for p in (out / "audio").rglob("*.flac"))
    assert clip_seconds == pytest.approx(sum(c.duration_s for r in rows for c in r.audio), abs=1e-6)


def test_single_clip_rows_carry_prompt_answer_and_transcript(exported):
    _, _, out = exported("mixed", "nemo-legacy")
    items = {(i["line"]["row_id"], i["line"]["prompt_id"]): i for i in nemo_items(out / "train.jsonl")}
    assert set(items) == {("mix-000", "blsp-continue"), ("mix-001", "desta-hear"), ("mix-001", "desta-speaker"),
                          ("mix-101", "desta-hear")}
    item = items[("mix-001", "desta-speaker")]
    assert item["context"] == "Describe the speaker and the way they speak."
    assert item["answer"] == "An American woman, calm and clear."
    assert item["line"]["text"] == "The old dog slept by the fire."
    assert item["line"]["speaker"] == "espeak:en-us+f2" and item["line"]["lang"] == "en-us"
    assert item["duration"] == 1.5
    heldout = nemo_items(out / "heldout.jsonl")
    assert [(i["line"]["row_id"], i["answer"]) for i in heldout] == [("mix-100", "They found it warmed quickly.")]


def test_interleaved_rows_are_multi_audio_with_one_locator_per_clip_in_order(exported):
    _, _, out = exported("mixed", "nemo-legacy")
    (item,) = nemo_items(out / "heldout_multi_audio.jsonl")
    assert item["context"] == f"{AUDIO_LOCATOR} on the harbour {AUDIO_LOCATOR} in the grey {AUDIO_LOCATOR}"
    # NeMo's MultiAudioTextDataset requires text pieces = clips + 1 when it splits the context at the locator
    assert len(item["context"].split(AUDIO_LOCATOR)) == len(item["audio_file"]) + 1 == 4
    assert [p.name for p in item["audio_file"]] == ["mix-002_0.flac", "mix-002_1.flac", "mix-002_2.flac"]
    assert item["duration"] == [0.5, 0.75, 0.625]
    assert item["answer"] == "By night the wind had dropped."


def test_rows_without_targets_are_reported_not_lost(exported):
    _, summary, out = exported("mixed", "nemo-legacy")
    assert summary.totals.skipped == {"no_targets": 1}
    assert read_jsonl(out / "skipped.jsonl") == [{"id": "mix-003", "task": "continuation", "reason": "no_targets"}]
    report = json.loads((out / "export.json").read_text())
    assert report["counts"]["rows_selected"] == 7
    assert report["counts"]["rows_exported"] + sum(report["counts"]["skipped"].values()) == 7
    assert not list(out.rglob("mix-003_*"))
