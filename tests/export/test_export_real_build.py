"""A real build with LLM targets (Gemma 3 270M: continuation and description rows), exported to every format
and loaded back by each consumer with equal counts and durations."""

from __future__ import annotations

import io
import json

import pytest
import soundfile as sf

from align_data.export import export_corpus
from align_data.pipeline.build import build
from tests.conftest import TINY_CORPUS, make_config
from tests.export.readers import blsp_items, flac_seconds, nemo_conversations, nemo_items, source_rows


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_build_exports_to_every_format_with_equal_counts_and_durations(tmp_path, monkeypatch):
    import datasets
    import lhotse

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TINY_CORPUS)
    config = make_config(corpus, interleave={"task_weights": {"continuation": 0.5, "description": 0.5}},
                         splits={"heldout_fraction": 0.4}, llm={"max_new_tokens": 16},
                         quality={"target_filters": []})  # answers cut at 16 tokens: over_length would filter them
    summary = build(config, tmp_path / "build")
    m = summary.manifest
    rows = source_rows(tmp_path / "build")
    assert set(m["tasks"]) == {"continuation", "description"} and set(m["splits"]) == {"train", "heldout"}
    assert all(r.targets and r.targets[0].model != "corpus" for r in rows)
    clips = sum(len(r.audio) for r in rows)

    out = {fmt: tmp_path / fmt for fmt in ("lhotse", "nemo", "nemo-legacy", "blsp", "hf")}
    done = {fmt: export_corpus(tmp_path / "build", path, fmt) for fmt, path in out.items()}
    for fmt, result in done.items():
        assert result.totals.rows_exported == m["rows"] and not result.totals.skipped, fmt
        assert result.totals.audio_seconds == pytest.approx(m["audio_seconds"], abs=0.01), fmt

    cuts = [c for split in m["splits"] for c in lhotse.CutSet.from_shar(in_dir=out["lhotse"] / split)]
    assert len(cuts) == clips
    assert sum(c.load_audio().shape[1] / c.sampling_rate for c in cuts) == pytest.approx(m["audio_seconds"], abs=0.01)

    items = [i for split in m["splits"] for i in nemo_items(out["nemo-legacy"] / f"{split}.jsonl")]
    assert len(items) == sum(len(r.targets) for r in rows)
    assert sum(flac_seconds(i["audio_file"]) for i in items) == pytest.approx(m["audio_seconds"], abs=0.01)
    by_id = {r.id: r for r in rows}
    assert all(i["answer"] == by_id[i["line"]["row_id"]].targets[0].response for i in items)
    conversations = [c for split in m["splits"]
                     for c in nemo_conversations(out["nemo"] / f"{split}.conversations.jsonl")]
    assert len(conversations) == len(items)
    clips = [t for c in conversations for t in c["turns"] if t["type"] == "audio"]
    assert sum(flac_seconds(t["path"]) for t in clips) == pytest.approx(m["audio_seconds"], abs=0.01)
    assert all(c["turns"][-1]["text"] == by_id[c["custom"]["row_id"]].targets[0].response for c in conversations)

    monkeypatch.chdir(out["blsp"])
    lines = [item for path in sorted(out["blsp"].glob("*/*.jsonl"))
             for item in blsp_items(path.parent, path.name)]
    assert len(lines) == len(items) and all(line["is_readable"] for line in lines)
    instructions = json.loads((out["blsp"] / "instructions.json").read_text())
    assert instructions["blsp-continue"].startswith("Continue the following text")

    ds = datasets.load_dataset(str(out["hf"]))
    assert {s: len(ds[s]) for s in ds} == m["splits"]
    seconds = 0.0
    for split in ds:
        for row in ds[split].cast_column("audio", datasets.List(datasets.Audio(decode=False))):
            for clip in row["audio"]:
                data, rate = sf.read(io.BytesIO(clip["bytes"]))
                seconds += len(data) / rate
    assert seconds == pytest.approx(m["audio_seconds"], abs=0.01)
