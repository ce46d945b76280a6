"""HF export, loaded with ``datasets.load_dataset(OUT)``: splits, per-task configs, Audio feature, dataset card."""

from __future__ import annotations

import io
import json

import pytest
import soundfile as sf

from tests.export.readers import source_rows

datasets = pytest.importorskip("datasets")


def undecoded(ds):
    """Audio as FLAC bytes: ``datasets`` 5 decodes through torchcodec, which cannot run here."""
    return ds.cast_column("audio", datasets.List(datasets.Audio(sampling_rate=16000, decode=False)))


@pytest.mark.parametrize("build", ["mixed", "interleaved"])
def test_load_dataset_of_the_folder_gives_the_build_splits_rows_and_audio(exported, build):
    source, summary, out = exported(build, "hf")
    rows = source_rows(source)
    ds = datasets.load_dataset(str(out))
    assert sorted(ds) == sorted({r.split for r in rows})
    assert isinstance(ds["train"].features["audio"].feature, datasets.Audio)
    assert ds["train"].features["audio"].feature.sampling_rate == 16000
    seconds = 0.0
    for split in ds:
        expected = {r.id: r for r in rows if r.split == split}
        got = undecoded(ds[split])
        assert sorted(got["id"]) == sorted(expected)
        for row in got:
            source_row = expected[row["id"]]
            assert [t["response"] for t in row["targets"]] == [t.response for t in source_row.targets]
            assert len(row["audio"]) == len(source_row.audio)
            for clip, meta in zip(row["audio"], source_row.audio, strict=True):
                data, rate = sf.read(io.BytesIO(clip["bytes"]))
                assert rate == 16000 and len(data) == meta.num_samples
                seconds += len(data) / rate
    manifest = json.loads((source / "manifest.json").read_text())
    assert seconds == pytest.approx(manifest["audio_seconds"], abs=0.01)
    assert summary.totals.rows_exported == manifest["rows"] == sum(len(ds[s]) for s in ds)


def test_one_config_per_task(exported):
    _, _, out = exported("mixed", "hf")
    description = datasets.load_dataset(str(out), "description")
    assert {s: sorted(description[s]["id"]) for s in description} == {"train": ["mix-001", "mix-101"]}
    interleaved = datasets.load_dataset(str(out), "interleaved")
    assert {s: sorted(interleaved[s]["id"]) for s in interleaved} == {"heldout": ["mix-002"], "train": ["mix-102"]}


def test_dataset_card_has_counts_hours_voices_config_and_license(exported):
    source, _, out = exported("mixed", "hf")
    card = (out / "README.md").read_text()
    config = json.loads((source / "config.json").read_text())
    assert card.startswith("---\nlicense: unknown\n")
    assert "| task | train | heldout | recipe |" in card
    assert "| continuation | 2 | 1 |" in card
    assert "| description | 2 | 0 |" in card
    assert "| train | 5 | 0.001 | 5.0 |" in card  # 1.25 + 1.5 + 0.4 + 1.0 + 0.875 s of tones
    assert "| espeak:en-us+f2 | 7 |" in card
    assert config["config_hash"] in card and f'"seed": {config["config"]["seed"]}' in card
    assert "license of each source" in card and "| tiny |" in card


def test_the_card_and_every_row_carry_the_source_licence(exported):
    from align_data.export.hf_card import card_license

    source, _, out = exported("interleaved", "hf")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc0-1.0\n") and "| tiny | " in card and "| CC0-1.0 |" in card
    ds = undecoded(datasets.load_dataset(str(out)))
    assert {row["provenance"]["license"] for split in ds for row in ds[split]} == {"CC0-1.0"}
    engines = {row["provenance"]["tts_engine"] for split in ds for row in ds[split]}
    assert len(engines) == 1 and engines.pop().split()[0] == "espeak-ng"  # "espeak-ng 1.51" on Debian 12
    assert card_license([{"license": "MIT"}, {"license": "mit"}]) == "mit"
    assert card_license([{"license": "MIT"}, {"license": "CC-BY-4.0"}]) == "other"
    assert card_license([{"license": "MIT"}, {}]) == "unknown"
