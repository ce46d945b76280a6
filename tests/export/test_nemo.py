"""NeMo export (speechlm2 / SALM): multimodal_conversation lines read as NeMo's jsonl adapter reads them, the
input_cfg YAML beside them, the locator tag flag. NeMo's own reader runs on it in test_nemo_salm.py (make test-nemo)."""

from __future__ import annotations

import json

import pytest
import yaml

from align_data.errors import AlignDataError
from align_data.export import export_corpus
from align_data.export.nemo_conversation import NEMO_DIR_ENV, SALM_LOCATOR_TAG
from tests.export.readers import flac_seconds, nemo_conversations, read_jsonl, source_rows


def read_split(out, split):
    return nemo_conversations(out / f"{split}.conversations.jsonl")


@pytest.mark.parametrize("build", ["mixed", "interleaved"])
def test_one_line_per_target_in_its_split_with_every_clip_and_its_exact_duration(exported, build):
    source, summary, out = exported(build, "nemo")
    rows = [r for r in source_rows(source) if r.targets]
    splits = sorted({r.split for r in rows})
    assert sorted(p.name for p in out.glob("*.conversations.jsonl")) == [f"{s}.conversations.jsonl" for s in splits]
    by_id = {r.id: r for r in rows}
    seen = []
    for split in splits:
        for item in read_split(out, split):
            row = by_id[item["custom"]["row_id"]]
            k = int(item["id"].rsplit("-target", 1)[1])
            target = row.targets[k]
            seen.append((row.id, k))
            assert row.split == split == item["custom"]["split"]
            audio = [t for t in item["turns"] if t["type"] == "audio"]
            assert len(audio) == len(row.audio)
            for turn, clip in zip(audio, row.audio, strict=True):
                assert turn["role"] == "user" and turn["path"].is_file() and turn["offset"] == 0.0
                assert turn["duration"] == clip.num_samples / clip.sample_rate == flac_seconds(turn["path"])
            assert item["turns"][-1] == {"role": "assistant", "type": "text", "text": target.response}
            assert all(t["role"] == "user" for t in item["turns"][:-1])
            if target.prompt:
                assert item["turns"][0] == {"role": "user", "type": "text", "text": target.prompt}
    assert sorted(seen) == sorted((r.id, k) for r in rows for k in range(len(r.targets)))
    assert summary.totals.items == len(seen)


def test_single_clip_and_interleaved_rows_keep_their_segment_order(exported):
    _, _, out = exported("mixed", "nemo")
    train = {i["id"]: i["line"] for i in read_split(out, "train")}
    assert set(train) == {"mix-000-target0", "mix-001-target0", "mix-001-target1", "mix-101-target0",
                          "mix-102-target0"}
    assert train["mix-001-target1"]["conversations"] == [
        {"from": "User", "type": "text", "value": "Describe the speaker and the way they speak."},
        {"from": "User", "type": "audio", "value": "audio/00000/mix-001_0.flac", "duration": 1.5},
        {"from": "Assistant", "type": "text", "value": "An American woman, calm and clear."}]
    assert train["mix-001-target0"]["conversations"][1] == train["mix-001-target1"]["conversations"][1]
    assert [(t["type"], t["value"]) for t in train["mix-102-target0"]["conversations"]] == [
        ("text", "The train left early"), ("audio", "audio/00001/mix-102_0.flac"),
        ("text", "They waited for the next one.")]
    (interleaved,) = [i["line"] for i in read_split(out, "heldout") if i["custom"]["row_id"] == "mix-002"]
    assert [(t["from"], t["type"], t.get("duration")) for t in interleaved["conversations"]] == [
        ("User", "audio", 0.5), ("User", "text", None), ("User", "audio", 0.75), ("User", "text", None),
        ("User", "audio", 0.625), ("Assistant", "text", None)]  # its prompt is empty: no prompt turn
    assert interleaved["custom"] == {
        "row_id": "mix-002", "task": "interleaved", "split": "heldout", "prompt_id": "inserter-next",
        "target_task": "interleaved",
        "voice": {"backend": "espeak", "voice_id": "en-us+f2", "gender": "female", "accent": "American",
                  "language": "en-us", "rate": 175.0, "pitch": 50.0, "volume": 100.0, "emotion": "unknown",
                  "mix": []}}


def test_input_cfg_names_the_split_jsonl_through_the_variable_and_the_salm_tag(exported):
    _, _, out = exported("mixed", "nemo")
    for split in ("train", "heldout"):
        text = (out / f"{split}.input_cfg.yaml").read_text()
        assert NEMO_DIR_ENV in text.split("- type")[0]  # the comment says what to set
        assert yaml.safe_load(text) == [{
            "type": "multimodal_conversation",
            "manifest_filepath": f"${{oc.env:{NEMO_DIR_ENV}}}/{split}.conversations.jsonl",
            "audio_locator_tag": SALM_LOCATOR_TAG}]
    assert SALM_LOCATOR_TAG == "<|audioplaceholder|>"


def test_absolute_paths_go_into_the_yaml_and_the_lines(mixed_build, tmp_path):
    out = tmp_path / "out"
    export_corpus(mixed_build, out, "nemo", absolute_paths=True)
    (item,) = yaml.safe_load((out / "train.input_cfg.yaml").read_text())
    assert item["manifest_filepath"] == str((out / "train.conversations.jsonl").resolve())
    audio = [t["value"] for line in read_jsonl(out / "train.conversations.jsonl") for t in line["conversations"]
             if t["type"] == "audio"]
    assert audio and all(p.startswith(str(out.resolve())) for p in audio)


def test_the_locator_tag_is_chosen_by_flag_checked_and_part_of_the_settings(mixed_build, tmp_path):
    out = tmp_path / "out"
    summary = export_corpus(mixed_build, out, "nemo", audio_locator_tag="<speech>")
    assert yaml.safe_load((out / "train.input_cfg.yaml").read_text())[0]["audio_locator_tag"] == "<speech>"
    assert summary.report["audio_locator_tag"] == "<speech>"
    with pytest.raises(AlignDataError, match="audio_locator_tag differ"):
        export_corpus(mixed_build, out, "nemo")
    for bad in ("", "two words", " <a>"):
        with pytest.raises(AlignDataError, match="must be non-empty without spaces"):
            export_corpus(mixed_build, tmp_path / "bad", "nemo", audio_locator_tag=bad)
    with pytest.raises(AlignDataError, match="--audio-locator-tag is for nemo; blsp writes no locator tag"):
        export_corpus(mixed_build, tmp_path / "bad", "blsp", audio_locator_tag="<speech>")
    assert not (tmp_path / "bad").exists()
    blsp = export_corpus(mixed_build, tmp_path / "blsp", "blsp")
    assert "audio_locator_tag" not in blsp.report
    assert "audio_locator_tag" not in json.loads((tmp_path / "blsp" / "progress" / "settings.json").read_text())


def test_a_row_whose_text_holds_the_tag_is_skipped_not_miscounted(mixed_build, tmp_path):
    out = tmp_path / "out"
    summary = export_corpus(mixed_build, out, "nemo", audio_locator_tag="dog")  # mix-001's answer is about a dog
    assert summary.totals.skipped == {"no_targets": 1, "locator_tag_in_text": 1}
    assert {"id": "mix-001", "task": "description", "reason": "locator_tag_in_text"} in read_jsonl(
        out / "skipped.jsonl")
    assert all(i["custom"]["row_id"] != "mix-001" for i in read_split(out, "train"))
    assert not list(out.rglob("mix-001_*"))


def test_rows_without_targets_are_reported_not_lost(exported):
    _, summary, out = exported("mixed", "nemo")
    assert summary.totals.skipped == {"no_targets": 1}
    assert read_jsonl(out / "skipped.jsonl") == [{"id": "mix-003", "task": "continuation", "reason": "no_targets"}]
    assert not list(out.rglob("mix-003_*"))


def test_cli_passes_the_locator_tag(mixed_build, tmp_path):
    from typer.testing import CliRunner

    from align_data.cli import app

    result = CliRunner().invoke(app, ["export", str(mixed_build), "--format", "nemo", "--out", str(tmp_path / "o"),
                                      "--audio-locator-tag", "<sound>"])
    assert result.exit_code == 0, result.output
    assert "<sound>" in (tmp_path / "o" / "heldout.input_cfg.yaml").read_text()
