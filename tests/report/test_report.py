"""``align-data report`` and ``inspect --json`` on a real tiny build (Whisper stands in), the page rendered in
headless Chromium, the balance rule, and the streaming statistics."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from align_data.cli import app
from align_data.pipeline.build import build
from align_data.report import write_report
from align_data.report.balance import compare, is_off
from align_data.report.collect import COLUMNS, CorpusStats, Histogram, iter_rows
from align_data.schemas.arrow import META_SCHEMA_VERSION
from tests.conftest import make_config
from tests.report.browser import image_states, media_states, screenshot

PLOTS = {"clip_duration.png", "words_per_second.png", "f0_by_gender.png", "snr.png", "wer_by_backend.png",
         "target_length_by_task.png", "task_mix.png", "errors_filtered.png", "shard_rows.png"}
runner = CliRunner()


class _FirstWordWhisper:
    """Stands in for WhisperTranscriber: hears only the word 'the', so WER varies with the span length."""

    def __init__(self, model, device, language, threads):
        self.name, self.max_samples = "first-word", 30 * 16000

    def transcribe(self, clips):
        return ["the" for _ in clips]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny real build (espeak voices, noise on every row, interleaved targets) with the quality column."""
    from align_data.stages.quality import asr
    from tests.conftest import TINY_CORPUS

    root = tmp_path_factory.mktemp("report")
    corpus = root / "corpus.txt"
    corpus.write_text(TINY_CORPUS)
    patch = pytest.MonkeyPatch()
    patch.setattr(asr, "WhisperTranscriber", _FirstWordWhisper)
    try:
        config = make_config(corpus, interleave={"task_weights": {"interleaved": 1.0}},
                             acoustics={"noise_prob": 1.0, "snr_range_db": [10.0, 20.0]},
                             quality={"enabled": True, "wer_threshold": 0.95})
        build(config, root / "out")
    finally:
        patch.undo()
    return root / "out"


def test_report_page_renders_every_plot_in_chromium(built, tmp_path):
    from PIL import Image

    report = write_report(built)
    assert report.page == built / "report" / "report.html"
    assert {p.name for p in report.plots} == PLOTS
    states = image_states(report.page)
    assert {s["src"] for s in states} == PLOTS
    broken = [s for s in states if not (s["complete"] and s["width"] > 0 and s["height"] > 0)]
    assert not broken, broken
    shot = screenshot(report.page, tmp_path / "report.png")
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape[1] == 1500 and pixels.std() > 10  # drawn, not a blank page
    html = report.page.read_text()
    for text in ("Warnings", "ASR round trip", "Target checks", "Balance against the config", "first-word",
                 "Description faithfulness", "<td>content</td>", "Repairs"):
        assert text in html


def test_report_opens_with_rows_to_listen_to_whose_players_load(built):
    report = write_report(built)
    html = report.page.read_text()
    assert html.index("Listen: rows of every voice") < html.index("<h2>Summary") < html.index("<h2>Plots") \
        < html.index("<h2>Target checks")
    rows = [r for p in sorted((built / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    voices = {f"{r['voice']['backend']}:{r['voice']['voice_id']}" for r in rows}
    assert report.samples == len(voices)  # one task here, so one row per voice
    state = media_states(report.page)
    players = state["audio"]
    assert len(players) == len(list((report.page.parent / "audio").glob("*.flac"))) >= len(voices)
    assert all(p["error"] is None and p["ready"] >= 1 and p["duration"] > 0.2 for p in players), players
    assert state["errors"] == [] and state["console"] == []
    by_name = {r["id"]: r for r in rows}
    first = players[0]["src"]  # audio/ROWID_0.flac holds the row's first clip, byte for byte
    row_id = first.removeprefix("audio/").rsplit("_", 1)[0]
    assert (report.page.parent / first).read_bytes() == by_name[row_id]["audio"][0]["bytes"]
    for voice in voices:
        assert f"<td>{voice}</td>" in html


def test_the_media_check_sees_a_missing_clip(built):
    report = write_report(built)
    clip = sorted((report.page.parent / "audio").glob("*.flac"))[0]
    clip.unlink()
    state = media_states(report.page)
    failed = [p for p in state["audio"] if p["error"]]
    assert [p["src"] for p in failed] == [f"audio/{clip.name}"] and state["errors"]


def test_the_browser_check_sees_a_missing_plot(built):
    report = write_report(built)
    (report.page.parent / "snr.png").unlink()
    states = {s["src"]: s for s in image_states(report.page)}
    assert states["snr.png"]["width"] == 0
    assert all(s["width"] > 0 for src, s in states.items() if src != "snr.png")


def test_report_numbers_match_the_rows(built):
    report = write_report(built)
    rows = [r for p in sorted((built / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    s = report.stats
    assert s.rows == len(rows) == report.manifest["rows"] > 0
    assert s.clips == sum(len(r["audio"]) for r in rows) == s.clip_seconds.n
    assert s.rows_with_quality == len(rows)
    assert sum(h.n for h in s.wer_by_backend.values()) == s.clips  # one WER per clip
    assert s.snr_db.n == len(rows) and 9 < s.snr_db.mean < 21
    assert s.seconds_by["genders"].total() == pytest.approx(report.manifest["audio_seconds"], abs=0.05)
    assert dict(s.tasks) == {"interleaved": len(rows)}
    assert s.targets_by_task["interleaved"] == len(rows)


def test_report_and_inspect_json_commands(built):
    result = runner.invoke(app, ["report", str(built)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) <= 25 and "report.html" in lines[-1] and "ASR WER per clip" in result.output
    result = runner.invoke(app, ["inspect", str(built), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    manifest = json.loads((built / "manifest.json").read_text())
    assert summary["totals"]["rows"] == manifest["rows"]
    assert summary["totals"]["rows"] + summary["totals"]["errors"] + summary["totals"]["filtered"] == \
        summary["totals"]["candidates"]
    assert summary["stages"]["quality"]["total"] > 0 and "seconds" in summary["stages"]["quality"]
    assert list(summary["stages"]).index("quality") < list(summary["stages"]).index("targets")
    assert sum(summary["backends"].values()) == manifest["rows"]
    assert summary["configured"]["backends"] == {"espeak": 1.0}
    assert summary["filtered_by_reason"].get("interleave/no_next_text") == 3
    bad = runner.invoke(app, ["inspect", str(built), "--json", "--shard", "0"])
    assert bad.exit_code == 1 and "drop --shard" in bad.output


def test_report_on_a_folder_that_is_not_a_build(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "no manifest.json" in " ".join(result.output.split())
    assert not (tmp_path / "report").exists()


def test_report_reads_shards_written_before_the_quality_column(built, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(built, old, ignore=shutil.ignore_patterns("report"))
    for path in (old / "shards").glob("*.parquet"):
        table = pq.read_table(path).drop_columns(["quality"])
        table = table.replace_schema_metadata({**table.schema.metadata, META_SCHEMA_VERSION: b"1.1"})
        pq.write_table(table, path)
    report = write_report(old)
    assert report.stats.rows == report.manifest["rows"] and report.stats.rows_with_quality == 0
    assert any("not run" in line for line in report.summary_lines())


def test_rows_are_streamed_without_audio(built):
    assert "audio" not in COLUMNS
    path = min((built / "shards").glob("*.parquet"))
    rows = list(iter_rows(path, batch_rows=1))
    assert rows and all("audio" not in r and "audio_meta" in r for r in rows)


# --- balance rule and statistics, no build -------------------------------------------------------------------

def test_balance_rule_relative_and_beyond_noise():
    assert not is_off(0.21, 0.20, rows=100_000)  # 5 % relative: within tolerance
    assert is_off(0.23, 0.20, rows=100_000)  # 15 % relative and far beyond sampling noise
    assert not is_off(0.23, 0.20, rows=100)  # 15 % relative but 2 SE at n=100 is 8 points: noise
    assert is_off(0.05, 0.0, rows=10)  # present but not configured
    assert is_off(0.0, 0.10, rows=50) and not is_off(0.0, 0.10, rows=5)  # configured, absent
    shares = compare("genders", "rows", Counter(female=30, male=70), {"female": 0.5, "male": 0.5}, rows=100)
    assert [(s.key, round(s.observed, 2), s.off) for s in shares] == [("female", 0.3, True), ("male", 0.7, True)]


def test_histogram_streams_into_fixed_bins():
    hist = Histogram.linear(0, 10, 1)
    for chunk in np.array_split(np.arange(0.5, 10.5, 1.0), 3):
        hist.add(chunk)
    hist.add([None, float("nan"), -3.0, 42.0])
    assert hist.n == 12 and hist.below == 1 and hist.above == 1
    assert hist.counts.tolist() == [1] * 10 and hist.high == 42.0
    assert hist.quantile(0.5) == pytest.approx(5.0, abs=1.0)


def test_target_checks_are_counted_per_task():
    stats = CorpusStats()
    base = {"model": "m", "backend": "b", "prompt_id": "p", "prompt": "Continue the text."}
    stats.add_row({"task": "continuation", "text": "Maya filled the kettle and waited by the window.",
                   "description": None, "audio_meta": [{"num_samples": 16000, "sample_rate": 16000}],
                   "voice": None, "paralinguistics": None, "split": "train", "quality": None,
                   "targets": [base | {"task": "continuation", "response": "Maya filled the kettle and waited.",
                                       "finish_reason": "length"}]})
    assert stats.checks == Counter({("continuation", "echo"): 1, ("continuation", "over_length"): 1})
    assert stats.check_totals()["echo"] == 1 and stats.check_totals()["repeated_ngrams"] == 0
    assert stats.clips == 1 and stats.clip_seconds.n == 1
