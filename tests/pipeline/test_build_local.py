"""End to end on the local runner (interleaved rows only: no LLM, everything else real)."""

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from align_data.errors import AlignDataError
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from tests.conftest import make_config


@pytest.fixture
def built(tmp_path, interleaved_config):
    out = tmp_path / "out"
    summary = build(interleaved_config, out)
    return out, summary


def test_counts_invariant_and_files(built):
    out, summary = built
    m = summary.manifest
    assert summary.planned == 2 and summary.written == 2 and not summary.failed
    assert m["rows"] > 0 and m["rows"] + m["errors"] + m["filtered"] == m["candidates"]
    assert m["input_docs"] == m["planned_docs"] == 3
    assert m["tasks"] == {"interleaved": m["rows"]}
    assert m["stage_order"][:3] == ["source", "interleave", "tts"]  # pipeline order, not alphabetical
    assert m["stages"]["interleave"]["filtered"] == {"no_next_text": 3}  # one per document end
    for name in ("00000", "00001"):
        for rel in (f"shards/{name}.parquet", f"shards/{name}.tar", f"shards/{name}.json",
                    f"errors/{name}.jsonl", f"filtered/{name}.jsonl"):
            assert (out / rel).exists(), rel
    assert not list(out.rglob(".*tmp*"))  # no temporary files left behind
    assert validate_build(out) == []


def test_parquet_metadata_and_rows(built):
    out, summary = built
    pf = pq.ParquetFile(out / "shards/00000.parquet")
    meta = pf.schema_arrow.metadata
    assert meta[b"align_data.config_hash"].decode() == summary.manifest["config_hash"]
    rows = pf.read().to_pylist()
    for row in rows:
        speech = [s for s in row["segments"] if s["modality"] == "speech"]
        assert len(speech) == len(row["audio"]) == len(row["audio_meta"])
        assert row["targets"][0]["response"] == row["next_text"]
        data, rate = sf.read(io.BytesIO(row["audio"][0]["bytes"]))
        assert rate == 16000 and len(data) == row["audio_meta"][0]["num_samples"]


def test_loads_with_hf_datasets(built):
    import datasets

    out, summary = built
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards/*.parquet"), split="train")
    assert len(ds) == summary.manifest["rows"]
    assert type(ds.features["audio"].feature).__name__ == "Audio"
    clip = ds[0]["audio"][0]
    data, rate = sf.read(io.BytesIO(clip["bytes"]))
    assert rate == 16000 and data.size > 0


def test_loads_with_webdataset(built):
    import webdataset as wds

    out, summary = built
    urls = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == summary.manifest["rows"]
    first = samples[0]
    meta = json.loads(first["json"])
    assert meta["id"] == first["__key__"]
    data, rate = sf.read(io.BytesIO(first["flac"]))
    assert rate == 16000 and data.size == meta["audio_meta"][0]["num_samples"]


def test_tar_is_reproducible_metadata(built):
    out, _ = built
    with tarfile.open(out / "shards/00000.tar") as tar:
        for member in tar.getmembers():
            assert member.mtime == 0 and member.uid == 0 and member.uname == ""


def test_validate_catches_a_flipped_byte_and_a_deleted_shard(built):
    out, _ = built
    path = out / "shards/00001.tar"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = validate_build(out)
    assert any("00001.tar does not match its sha256" in p for p in problems)
    (out / "shards/00000.parquet").unlink()
    problems = validate_build(out)
    assert any("00000.parquet is missing" in p for p in problems)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, corpus_file, interleaved_config):
    a = build(interleaved_config, tmp_path / "a")
    b = build(interleaved_config, tmp_path / "b")
    other = make_config(corpus_file, seed=5, interleave={"task_weights": {"interleaved": 1.0}})
    c = build(other, tmp_path / "c")
    for rel in ("shards/00000.parquet", "shards/00000.tar", "shards/00001.parquet"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/shards/00000.tar").read_bytes() != (tmp_path / "c/shards/00000.tar").read_bytes()
    assert a.manifest["rows"] == b.manifest["rows"] == c.manifest["rows"]


def test_refuses_non_empty_out_then_resume_skips_verified_shards(built, interleaved_config):
    out, _ = built
    with pytest.raises(AlignDataError, match="--resume"):
        build(interleaved_config, out)
    again = build(interleaved_config, out, resume=True)
    assert again.skipped == 2 and again.written == 0
    (out / "shards/00001.json").unlink()  # as if the run had died before finishing shard 1
    again = build(interleaved_config, out, resume=True)
    assert again.skipped == 1 and again.written == 1
    assert validate_build(out) == []


def test_resume_with_changed_config_refuses(built, corpus_file):
    out, _ = built
    changed = make_config(corpus_file, seed=9, interleave={"task_weights": {"interleaved": 1.0}})
    with pytest.raises(AlignDataError, match="config changed"):
        build(changed, out, resume=True)
    assert build(changed, out, overwrite=True).written == 2


def test_limit_caps_documents(tmp_path, interleaved_config):
    summary = build(interleaved_config, tmp_path / "o", limit=1)
    assert summary.planned == 1 and summary.manifest["input_docs"] == 1


def test_jsonl_source_with_id_column(tmp_path):
    src = Path("examples/demo_corpus.jsonl").resolve()
    cfg = make_config(src, sources=[{"name": "j", "path": str(src), "id_column": "id"}],
                      interleave={"task_weights": {"interleaved": 1.0}}, shards={"docs_per_shard": 6})
    summary = build(cfg, tmp_path / "o", limit=3)
    rows = pq.read_table(tmp_path / "o/shards/00000.parquet").to_pylist()
    assert summary.manifest["input_docs"] == 3
    assert {r["source"]["doc_id"] for r in rows} <= {"doc-001", "doc-002", "doc-003"}


def test_parquet_source_and_bad_column(tmp_path):
    import pyarrow as pa

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"body": ["One short line of text for the test here.", "Another line, also long enough."]}), path)
    cfg = make_config(path, sources=[{"name": "p", "path": str(path), "text_column": "body"}],
                      interleave={"task_weights": {"interleaved": 1.0}})
    assert build(cfg, tmp_path / "o").manifest["input_docs"] == 2
    bad = make_config(path, sources=[{"name": "p", "path": str(path)}])
    with pytest.raises(AlignDataError, match="no column 'text'"):
        build(bad, tmp_path / "o2")


def test_hostile_corpus_never_crashes(tmp_path):
    path = tmp_path / "hostile.txt"
    path.write_text("\n\n".join(["!!! ???", "-rf / --no-preserve-root is text here, nothing else.",
                                 "😀 🎉 emoji party for everyone tonight", "y" * 10_000,
                                 "A perfectly ordinary sentence about the weather today."]) + "\n")
    cfg = make_config(path, interleave={"task_weights": {"interleaved": 1.0}})
    summary = build(cfg, tmp_path / "o")
    m = summary.manifest
    assert not summary.failed
    assert m["rows"] + m["errors"] + m["filtered"] == m["candidates"] >= 5
    assert validate_build(tmp_path / "o") == []


def test_a_failing_shard_is_reported_and_resume_finishes_it(tmp_path, interleaved_config, monkeypatch):
    import align_data.pipeline.stages as stages_mod

    real = stages_mod.read_documents

    def flaky(spec, config):
        if spec.start == 2:
            raise OSError("disk went away")
        return real(spec, config)

    monkeypatch.setattr(stages_mod, "read_documents", flaky)
    summary = build(interleaved_config, tmp_path / "o")
    assert summary.written == 1 and list(summary.failed) == [1] and "disk went away" in summary.failed[1]
    assert "in flaky" in summary.failed[1]  # the traceback ends where the error was raised
    assert summary.manifest["failed_shards"] and validate_build(tmp_path / "o")  # incomplete: invalid
    monkeypatch.setattr(stages_mod, "read_documents", real)
    again = build(interleaved_config, tmp_path / "o", resume=True)
    assert again.skipped == 1 and again.written == 1 and not again.failed
    assert validate_build(tmp_path / "o") == []


def test_noise_and_reverb_reach_the_rows_and_descriptions(tmp_path, corpus_file):
    cfg = make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}},
                      acoustics={"noise_prob": 1.0, "reverb_prob": 1.0, "snr_range_db": [10.0, 20.0]})
    build(cfg, tmp_path / "o")
    rows = pq.read_table(tmp_path / "o/shards/00000.parquet").to_pylist()
    for row in rows:
        a, p = row["acoustics"], row["paralinguistics"]
        assert 10.0 - 0.5 <= a["snr_db"] <= 20.0 + 0.5 and p["snr_db"] == a["snr_db"]
        assert p["c50_db"] == a["c50_db"] is not None
        assert "SNR: " in row["description"] and "C50: " in row["description"]
    assert validate_build(tmp_path / "o") == []


def test_mixed_voice_config_builds_with_every_backend(tmp_path):
    pytest.importorskip("piper")
    pytest.importorskip("hibari")
    from align_data.config import load_build_config
    from align_data.pipeline.summary import expected_voice_shares

    cfg = load_build_config("configs/mixed_voices.toml", ["runner.kind=local",
                                                          "interleave.task_weights={ interleaved = 1.0 }"])
    summary = build(cfg, tmp_path / "o", limit=3)
    m = summary.manifest
    assert {k.split(":")[0] for k in m["voices"]} == {"espeak", "piper", "hibari", "kokoro"}
    assert expected_voice_shares(tmp_path / "o")["backends"] == {"espeak": 0.25, "piper": 0.25, "hibari": 0.25,
                                                                 "kokoro": 0.25}
    assert validate_build(tmp_path / "o") == []
