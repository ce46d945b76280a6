"""What every format shares: same input ⇒ same bytes, resume by shard, nothing lost, clear errors, provenance."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from align_data.cli import app
from align_data.errors import AlignDataError
from align_data.export import export_corpus, formats

FORMATS = ["lhotse", "nemo", "nemo-legacy", "blsp", "hf"]


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_build_same_bytes_and_every_selected_row_accounted_for(exported, tmp_path, fmt):
    source, summary, out = exported("mixed", fmt)
    again = export_corpus(source, tmp_path / "again", fmt)
    first, second = tree_bytes(out), tree_bytes(tmp_path / "again")
    assert first.keys() == second.keys() and first == second
    assert not [name for name in first if ".tmp-" in name]
    t = summary.totals
    assert t.rows_read == t.rows_selected == 7
    assert t.rows_exported + sum(t.skipped.values()) == t.rows_selected
    assert again.totals.to_json() == t.to_json()


def test_export_json_and_source_config_record_where_it_came_from(exported):
    source, _, out = exported("mixed", "nemo")
    report = json.loads((out / "export.json").read_text())
    manifest = json.loads((source / "manifest.json").read_text())
    assert report["source"]["config_hash"] == manifest["config_hash"]
    assert len(report["source"]["fingerprint"]) == 64
    assert report["format"] == "nemo" and report["tasks"] == ["continuation", "description", "interleaved"]
    assert json.loads((out / "source_config.json").read_text()) == json.loads((source / "config.json").read_text())
    assert report["counts"]["audio_seconds"] == pytest.approx(
        sum(s["audio_seconds"] for s in manifest["shards"]) - 0.4, abs=0.002)  # mix-003 has no target
    assert {"train.conversations.jsonl", "train.input_cfg.yaml", "heldout.input_cfg.yaml"} <= set(report["files"])
    assert report["audio_locator_tag"] == "<|audioplaceholder|>"
    assert "created" not in json.dumps(report)  # no timestamps: equal inputs give equal bytes


def test_rerun_skips_finished_shards_and_redoes_damaged_or_unfinished_ones(mixed_build, tmp_path):
    out = tmp_path / "out"
    first = export_corpus(mixed_build, out, "nemo")
    assert (first.shards_written, first.shards_skipped) == (2, 0)
    reference = tree_bytes(out)
    again = export_corpus(mixed_build, out, "nemo")
    assert (again.shards_written, again.shards_skipped) == (0, 2)
    (out / "progress" / "00001.json").unlink()  # as if killed before shard 1's marker
    (out / "audio" / "00000" / "mix-001_0.flac").write_bytes(b"damaged")  # a file that does not verify
    (out / "audio" / "00000" / ".mix-000_0.flac.tmp-999").write_bytes(b"left by a killed run")
    resumed = export_corpus(mixed_build, out, "nemo")
    assert (resumed.shards_written, resumed.shards_skipped) == (2, 0)
    assert tree_bytes(out) == reference
    assert resumed.totals.to_json() == first.totals.to_json()


def test_other_settings_need_overwrite_and_overwrite_replaces(mixed_build, tmp_path):
    out = tmp_path / "out"
    export_corpus(mixed_build, out, "nemo")
    with pytest.raises(AlignDataError, match="other settings .*format.*--overwrite"):
        export_corpus(mixed_build, out, "blsp")
    with pytest.raises(AlignDataError, match="tasks differ"):
        export_corpus(mixed_build, out, "nemo", ["description"])
    summary = export_corpus(mixed_build, out, "blsp", overwrite=True)
    assert summary.shards_written == 2 and not (out / "train.conversations.jsonl").exists()
    assert (out / "instructions.json").exists()


def test_tasks_select_rows_and_the_rest_is_not_counted_as_lost(mixed_build, tmp_path):
    summary = export_corpus(mixed_build, tmp_path / "out", "lhotse", ["description", " continuation"])
    t = summary.totals
    assert summary.tasks == ("continuation", "description")
    assert (t.rows_read, t.rows_selected, t.rows_exported) == (7, 5, 5)
    assert t.tasks == {"continuation": 3, "description": 2}


@pytest.mark.parametrize("tasks, message", [
    (["summarize"], "unknown task 'summarize'; tasks are continuation, description, interleaved"),
    (["continuation", "interleaved", ""], None),
    ([""], "--tasks is empty"),
])
def test_task_names_are_checked(mixed_build, tmp_path, tasks, message):
    if message is None:
        assert export_corpus(mixed_build, tmp_path / "out", "hf", tasks).tasks == ("continuation", "interleaved")
        return
    with pytest.raises(AlignDataError, match=message):
        export_corpus(mixed_build, tmp_path / "out", "hf", tasks)
    assert not (tmp_path / "out").exists()


def test_a_known_task_without_rows_is_an_error(exported, tmp_path):
    source, _, _ = exported("interleaved", "nemo")
    with pytest.raises(AlignDataError, match=r"task 'continuation' has no rows in .* \(it has rows of: interleaved\)"):
        export_corpus(source, tmp_path / "out", "nemo", ["continuation"])


def test_bad_requests_are_clear_errors(mixed_build, tmp_path):
    known = "lhotse, nemo, nemo-legacy, blsp, hf"
    with pytest.raises(AlignDataError, match=f"unknown format 'kaldi'; choose one of: {known}"):
        export_corpus(mixed_build, tmp_path / "out", "kaldi")
    with pytest.raises(AlignDataError, match="inside the build folder"):
        export_corpus(mixed_build, mixed_build / "export", "nemo")
    with pytest.raises(AlignDataError, match="inside the build folder"):
        export_corpus(mixed_build, mixed_build, "nemo")
    with pytest.raises(AlignDataError, match="is inside --out"):
        export_corpus(mixed_build, mixed_build.parent, "nemo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlignDataError, match="not a finished align-data build: manifest.json is missing"):
        export_corpus(tmp_path / "empty", tmp_path / "out", "nemo")
    with pytest.raises(AlignDataError, match="is not a folder"):
        export_corpus(tmp_path / "nowhere", tmp_path / "out", "nemo")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(AlignDataError, match="not empty and holds no align-data export"):
            export_corpus(mixed_build, tmp_path / "busy", "nemo", overwrite=overwrite)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(AlignDataError, match="--absolute-paths is for formats .*nemo, nemo-legacy, blsp"):
        export_corpus(mixed_build, tmp_path / "out", "hf", absolute_paths=True)
    assert not list(mixed_build.rglob("progress"))


def test_a_damaged_source_shard_stops_the_export(mixed_build, tmp_path):
    source = tmp_path / "build"
    shutil.copytree(mixed_build, source)
    path = source / "shards" / "00001.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AlignDataError, match="00001.parquet does not match the sha256 in its sidecar"):
        export_corpus(source, tmp_path / "out", "nemo")
    assert (tmp_path / "out" / "progress" / "00000.json").exists()  # shard 0 stays done for the rerun
    assert not (tmp_path / "out" / "progress" / "00001.json").exists()


def test_cli_exports_and_reports_skipped_rows(mixed_build, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(mixed_build), "--format", "blsp", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "4 of 7 rows" in result.output and "not_single_clip=2" in result.output
    bad = runner.invoke(app, ["export", str(mixed_build), "--format", "kaldi", "--out", str(tmp_path / "k")])
    assert bad.exit_code == 1
    # one line (the console wraps it at its width)
    assert " ".join(bad.output.split()) == "error: unknown format 'kaldi'; choose one of: lhotse, nemo, nemo-legacy, blsp, hf"


def test_every_format_is_documented_in_the_cli_help():
    help_text = CliRunner().invoke(app, ["export", "--help"]).output
    for name in formats():
        assert name in help_text


def test_shards_a_resumed_build_adds_later_are_exported_by_a_rerun(mixed_build, tmp_path):
    from align_data.pipeline.manifest import load_sidecar, write_manifest

    partial = tmp_path / "build"
    shutil.copytree(mixed_build, partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    plan = json.loads((partial / "plan.json").read_text())["shards"]
    write_manifest(partial, manifest["config_hash"], plan, [load_sidecar(partial, 0)], {1: "worker lost"})
    first = export_corpus(partial, tmp_path / "out", "hf")
    assert first.totals.rows_exported == 4 and first.report["source"]["failed_shards"] == {"1": "worker lost"}
    write_manifest(partial, manifest["config_hash"], plan, [load_sidecar(partial, i) for i in (0, 1)], {})
    second = export_corpus(partial, tmp_path / "out", "hf")
    assert (second.shards_written, second.shards_skipped) == (1, 1)
    assert second.totals.rows_exported == 7
    assert tree_bytes(tmp_path / "out") == tree_bytes(export_corpus(mixed_build, tmp_path / "fresh", "hf").out)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bad_row_stops_its_shard_without_leaving_partial_files(tmp_path, fmt):
    from dataclasses import replace

    from tests.conftest import TINY_CORPUS, make_config
    from tests.export.corpora import mixed_records, write_build

    records = mixed_records()
    bad = records[1][1]
    records[1][1] = replace(bad, segments=(replace(bad.segments[0], audio_index=3),))
    (tmp_path / "corpus.txt").write_text(TINY_CORPUS)
    source = write_build(tmp_path / "build", records, make_config(tmp_path / "corpus.txt"))
    with pytest.raises(AlignDataError, match="mix-101: a speech segment points at audio 3, the row has 1 clip"):
        export_corpus(source, tmp_path / "out", fmt)
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
    assert (tmp_path / "out" / "progress" / "00000.json").exists()
    assert not (tmp_path / "out" / "progress" / "00001.json").exists()
    assert not (tmp_path / "out" / "export.json").exists()
