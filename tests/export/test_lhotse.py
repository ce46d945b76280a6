"""lhotse export, read back by lhotse itself: one cut per clip, audio loads, durations and counts match."""

from __future__ import annotations

import json

import pytest

from tests.export.readers import source_rows

lhotse = pytest.importorskip("lhotse")


def load_cuts(out, split):
    return list(lhotse.CutSet.from_shar(in_dir=out / split))


@pytest.mark.parametrize("build", ["mixed", "interleaved"])
def test_cutset_loads_with_one_cut_per_clip_and_matching_audio(exported, build):
    source, summary, out = exported(build, "lhotse")
    rows = source_rows(source)
    by_split = {}
    for row in rows:
        by_split.setdefault(row.split, []).append(row)
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "progress") == sorted(by_split)
    total_seconds = 0.0
    for split, split_rows in by_split.items():
        cuts = load_cuts(out, split)
        expected = [(r, i) for r in split_rows for i in range(len(r.audio))]
        assert [c.id for c in cuts] == [f"{r.id}_{i}" for r, i in expected]
        for cut, (row, index) in zip(cuts, expected, strict=True):
            clip = row.audio[index]
            audio = cut.load_audio()
            assert audio.shape == (1, clip.num_samples)
            assert cut.duration == pytest.approx(clip.num_samples / clip.sample_rate, abs=1e-9)
            assert cut.sampling_rate == cut.recording.sampling_rate == clip.sample_rate
            assert cut.recording.num_samples == clip.num_samples
            assert cut.recording.duration == pytest.approx(cut.duration, abs=1e-9)
            (sup,) = cut.supervisions
            spoken = [s.text for s in row.segments if s.modality == "speech" and s.audio_index == index]
            assert sup.text == " ".join(spoken)
            assert sup.speaker == f"{row.voice.backend}:{row.voice.voice_id}"
            assert sup.gender == row.voice.gender and sup.language == row.voice.language
            assert sup.custom["row_id"] == row.id and sup.custom["audio_index"] == index
            assert [t["response"] for t in sup.custom["targets"]] == [t.response for t in row.targets]
            assert sup.custom["voice"]["accent"] == row.voice.accent
            assert cut.custom["task"] == row.task and cut.custom["split"] == split
            total_seconds += cut.duration
        lhotse.validate(lhotse.CutSet.from_cuts(cuts), read_data=True)  # lhotse's own consistency checks
    manifest = json.loads((source / "manifest.json").read_text())
    assert total_seconds == pytest.approx(manifest["audio_seconds"], abs=0.01)
    assert summary.totals.items == sum(len(r.audio) for r in rows)
    assert summary.totals.rows_exported == manifest["rows"] and not summary.totals.skipped


def test_interleaved_rows_keep_their_input_order_in_custom(exported):
    _, _, out = exported("mixed", "lhotse")
    cuts = {c.id: c for c in load_cuts(out, "heldout")}
    segments = cuts["mix-002_1"].supervisions[0].custom["segments"]
    assert [(s["modality"], s["audio_index"]) for s in segments] == [
        ("speech", 0), ("text", None), ("speech", 1), ("text", None), ("speech", 2)]
    assert cuts["mix-002_1"].supervisions[0].text == "and the boats rocked"


def test_shar_shards_are_numbered_by_source_shard(exported):
    _, _, out = exported("mixed", "lhotse")
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "cuts.000000.jsonl.gz", "cuts.000001.jsonl.gz", "recording.000000.tar", "recording.000001.tar"]
    assert sorted(p.name for p in (out / "heldout").iterdir()) == [
        "cuts.000000.jsonl.gz", "cuts.000001.jsonl.gz", "recording.000000.tar", "recording.000001.tar"]
