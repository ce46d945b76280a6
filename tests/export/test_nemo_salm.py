"""NeMo 3.0's own SALM data path on our exports, in the venv `make test-nemo` makes: speechlm2's ``DataModule`` and
``SALMDataset`` (NeMo's ``get_lhotse_dataloader_from_config``, the llama2 prompt format, the collate SALM trains
on) read the ``nemo`` export's ``input_cfg`` YAMLs as a SALM recipe would, with a sentencepiece tokenizer made here
(the locator tag a user symbol); and NeMo's ``lhotse_shar`` / ``lhotse_as_conversation`` readers take the lhotse
export. Skipped where nemo_toolkit is not installed (the main venv)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from align_data.export import export_corpus
from align_data.export.nemo_conversation import NEMO_DIR_ENV, SALM_LOCATOR_TAG
from tests.export.readers import source_rows

pytestmark = [pytest.mark.nemo, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(importlib.util.find_spec("nemo") is None,
                                 reason="nemo_toolkit is not installed (make test-nemo)")]

BUILDS = ["mixed", "interleaved"]
PROMPT_FORMAT = "llama2"  # salm.yaml's model.prompt_format


def make_tokenizer(folder: Path, texts: list[str], tag: str):
    """A small BPE sentencepiece model over ``texts`` with ``tag`` as one user symbol, as NeMo's tokenizer."""
    import sentencepiece as spm
    from nemo.collections.common.tokenizers import SentencePieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.txt").write_text("\n".join(texts + ["[INST] [/INST] <<SYS>> <</SYS>>"]) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(folder / "text.txt"), model_prefix=str(folder / "sp"), vocab_size=300, model_type="bpe",
        hard_vocab_limit=False, character_coverage=1.0, user_defined_symbols=[tag],
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, minloglevel=2)
    return SentencePieceTokenizer(model_path=str(folder / "sp.model"))


def all_texts(builds) -> list[str]:
    return [text for build in builds for row in source_rows(build)
            for text in [row.text, *(s.text for s in row.segments),
                         *(x for t in row.targets for x in (t.prompt, t.response))] if text]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, mixed_build, interleaved_build):
    return make_tokenizer(tmp_path_factory.mktemp("sp"), all_texts([mixed_build, interleaved_build]),
                          SALM_LOCATOR_TAG)


def data_config(train: Path | list, heldout: Path | None) -> dict:
    """salm.yaml's ``data`` section with the one change a user makes: ``input_cfg`` names our YAML. The train set is
    made finite so that the test can count what arrives (training streams it endlessly)."""
    common = {"sample_rate": 16000, "prompt_format": PROMPT_FORMAT, "token_equivalent_duration": 0.08, "seed": 42,
              "shard_seed": "randomized"}
    data = {"train_ds": {**common, "input_cfg": train if isinstance(train, list) else str(train), "shuffle": True,
                         "num_workers": 0, "batch_size": 4, "force_finite": True}}
    if heldout is not None:
        data["validation_ds"] = {**common, "batch_size": 1, "datasets": {"val_set_0": {"input_cfg": str(heldout)}}}
    return data


def salm_batches(data: dict, tokenizer) -> dict[str, list[dict]]:
    """Every mini-batch of the train and validation loaders of speechlm2's DataModule over SALMDataset."""
    from nemo.collections.speechlm2.data import DataModule, SALMDataset
    from omegaconf import OmegaConf

    module = DataModule(OmegaConf.create(data), tokenizer=tokenizer, dataset=SALMDataset(tokenizer))
    batches = {"train": list(module.train_dataloader())}
    if "validation_ds" in data:
        batches["heldout"] = [by_name["val_set_0"] for by_name, _, _ in module.val_dataloader()]
    return batches


def per_conversation(batch: dict, pad_id: int) -> list[tuple]:
    """(conversation, its input ids, its loss mask, its clips' samples) for each conversation of a SALM batch;
    checks the left padding on the way."""
    out, row = [], 0
    for i, conv in enumerate(batch["conversations"]):
        n = len(conv.input_ids)
        ids, mask = batch["input_ids"][i], batch["loss_mask"][i]
        assert (ids[:-n] == pad_id).all() and not mask[:-n].any()  # SALM pads on the left
        clips = []
        for _ in conv.list_cuts():
            clips.append(batch["audios"][row, :batch["audio_lens"][row]].numpy())
            row += 1
        out.append((conv, ids[-n:], mask[-n:], clips))
    assert row == batch["audios"].shape[0] == batch["audio_lens"].shape[0]
    return out


def flac_samples(out: Path, rel: str) -> np.ndarray:
    data, rate = sf.read(out / rel, dtype="float32")
    assert rate == 16000
    return data


def user_message(row, target, tag: str) -> str:
    """What the user turn says, as NeMo joins it: the prompt, then the segments, a clip as the tag."""
    pieces = [target.prompt] if target.prompt else []
    pieces += [tag if s.modality == "speech" else s.text for s in row.segments if s.modality == "speech" or s.text]
    return " ".join(pieces)


def check_conversations(batches: dict[str, list[dict]], rows, tokenizer, tag: str, out: Path) -> None:
    """Each (row, target) arrives once, in its split; the answer tokens are the response and the loss mask covers
    them only; one locator token per clip; the clips' samples are the FLAC files', their lengths the durations."""
    by_id = {r.id: r for r in rows}
    tag_id = tokenizer.token_to_id(tag)
    for split, split_batches in batches.items():
        seen = Counter()
        for batch in split_batches:
            for conv, ids, mask, clips in per_conversation(batch, tokenizer.pad):
                row = by_id[conv.custom["row_id"]]
                k = int(conv.id.rsplit("-target", 1)[1])
                target = row.targets[k]
                seen[(row.id, k)] += 1
                assert conv.custom["split"] == row.split == split and conv.custom["task"] == row.task
                assert conv.custom["prompt_id"] == target.prompt_id
                assert conv.custom["voice"]["voice_id"] == row.voice.voice_id
                assert tokenizer.unk_id not in ids.tolist()  # so decoding gives back the text
                answer = int(mask.sum())
                assert answer > 1 and mask[-answer:].all()  # one block at the end: the assistant turn
                assert ids[-1] == tokenizer.eos
                assert tokenizer.ids_to_text(ids[-answer:-1].tolist()) == target.response
                assert tokenizer.ids_to_text(ids[:-answer].tolist()) == \
                    f"[INST] {user_message(row, target, tag)} [/INST]"
                assert int((ids == tag_id).sum()) == len(row.audio) == len(clips)
                for clip, audio, cut in zip(row.audio, clips, conv.list_cuts(), strict=True):
                    assert len(audio) == clip.num_samples
                    assert cut.duration == clip.num_samples / clip.sample_rate
                    rel = Path(cut.recording.sources[0].source).relative_to(out.resolve())
                    np.testing.assert_allclose(audio, flac_samples(out, str(rel)), atol=1e-6)
        expected = Counter((r.id, k) for r in rows if r.split == split for k in range(len(r.targets)))
        assert seen == expected, split


@pytest.mark.parametrize("build", BUILDS)
def test_salm_reads_each_target_once_with_its_answer_mask_locators_and_audio(exported, build, tokenizer,
                                                                             monkeypatch):
    source, _, out = exported(build, "nemo")
    rows = source_rows(source)
    monkeypatch.setenv(NEMO_DIR_ENV, str(out))
    batches = salm_batches(data_config(out / "train.input_cfg.yaml", out / "heldout.input_cfg.yaml"), tokenizer)
    check_conversations(batches, rows, tokenizer, SALM_LOCATOR_TAG, out)
    if build == "mixed":  # a row with two targets, an interleaved row with three clips, one in each split
        convs = [c for batch in batches["train"] + batches["heldout"] for c in batch["conversations"]]
        assert {c.id for c in convs} >= {"mix-001-target0", "mix-001-target1", "mix-002-target0"}


def test_the_yaml_names_the_variable_it_needs_and_absolute_exports_need_none(mixed_build, tokenizer, tmp_path,
                                                                            monkeypatch):
    from omegaconf.errors import InterpolationResolutionError

    out = tmp_path / "abs"
    export_corpus(mixed_build, out, "nemo", absolute_paths=True)
    monkeypatch.delenv(NEMO_DIR_ENV, raising=False)
    batches = salm_batches(data_config(out / "train.input_cfg.yaml", out / "heldout.input_cfg.yaml"), tokenizer)
    check_conversations(batches, source_rows(mixed_build), tokenizer, SALM_LOCATOR_TAG, out)
    relative = tmp_path / "rel"
    export_corpus(mixed_build, relative, "nemo")
    with pytest.raises(InterpolationResolutionError, match=NEMO_DIR_ENV):
        salm_batches(data_config(relative / "train.input_cfg.yaml", relative / "heldout.input_cfg.yaml"),
                     tokenizer)


def test_another_locator_tag_is_what_nemo_counts(mixed_build, tmp_path, monkeypatch):
    tag = "<speech>"
    out = tmp_path / "out"
    export_corpus(mixed_build, out, "nemo", audio_locator_tag=tag)
    tokenizer = make_tokenizer(tmp_path / "sp", all_texts([mixed_build]), tag)
    monkeypatch.setenv(NEMO_DIR_ENV, str(out))
    batches = salm_batches(data_config(out / "train.input_cfg.yaml", out / "heldout.input_cfg.yaml"), tokenizer)
    check_conversations(batches, source_rows(mixed_build), tokenizer, tag, out)


class CutsAsIs:
    """A dataset that hands the sampled cuts back, to see what NeMo's reader made of the files."""

    def __getitem__(self, cuts):
        return cuts


@pytest.mark.parametrize("build", BUILDS)
def test_nemo_reads_the_lhotse_shar_and_makes_transcripts_the_answers(exported, build, tokenizer):
    from nemo.collections.common.data.lhotse import get_lhotse_dataloader_from_config

    source, _, out = exported(build, "lhotse")
    rows = source_rows(source)
    by_clip = {f"{r.id}_{i}": (r, clip) for r in rows for i, clip in enumerate(r.audio)}
    for split in sorted({r.split for r in rows}):
        config = {"input_cfg": [{"type": "lhotse_shar", "shar_path": str(out / split)}], "batch_size": 4,
                  "force_finite": True, "shuffle": False, "seed": 0, "shard_seed": 0, "num_workers": 0}
        loader = get_lhotse_dataloader_from_config(config, global_rank=0, world_size=1, dataset=CutsAsIs())
        cuts = [cut for batch in loader for cut in batch]
        assert Counter(c.id for c in cuts) == Counter(k for k, (r, _) in by_clip.items() if r.split == split)
        for cut in cuts:
            row, clip = by_clip[cut.id]
            assert cut.load_audio().shape == (1, clip.num_samples)
            assert [t["response"] for t in cut.supervisions[0].custom["targets"]] == [t.response for t in row.targets]

        # salm.yaml's own reader of lhotse data: one conversation per clip whose answer is the clip's transcript;
        # the targets (in the supervision's custom) do not reach it
        item = {"type": "lhotse_as_conversation", "shar_path": str(out / split), "audio_locator_tag": SALM_LOCATOR_TAG}
        seen = Counter()
        for batch in salm_batches(data_config([item], None), tokenizer)["train"]:
            for conv, ids, mask, clips in per_conversation(batch, tokenizer.pad):
                row, clip = by_clip[conv.id]
                seen[conv.id] += 1
                spoken = " ".join(s.text for s in row.segments
                                  if s.modality == "speech" and s.audio_index == int(conv.id.rsplit("_", 1)[1]))
                answer = int(mask.sum())
                assert tokenizer.ids_to_text(ids[-answer:-1].tolist()) == spoken
                assert tokenizer.ids_to_text(ids[:-answer].tolist()) == f"[INST] {SALM_LOCATOR_TAG} [/INST]"
                assert [len(a) for a in clips] == [clip.num_samples]
                assert "targets" not in conv.custom
        assert seen == Counter(k for k, (r, _) in by_clip.items() if r.split == split)

