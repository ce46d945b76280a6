"""Reading a build into tokenized examples: template, counts, refusals, features at real length, seeded order."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer, WhisperFeatureExtractor

from align_data.errors import AlignDataError
from align_data.schemas.arrow import META_SCHEMA_VERSION
from align_data.trainer.data import (
    Featurizer,
    SpeechPiece,
    TextPiece,
    as_transcript,
    collate,
    load_examples,
    read_records,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_models: tuple[Path, Path]):
    return AutoTokenizer.from_pretrained(tiny_models[1])


def _text(tokenizer, ids: tuple[int, ...]) -> str:
    return tokenizer.decode(list(ids))


def test_examples_follow_segments_and_template(tiny_build: Path, tokenizer) -> None:
    examples, counts = load_examples(tiny_build, tokenizer, max_target_tokens=32)
    assert [e.key for e in examples] == ["tiny-000/0", "tiny-001/0", "tiny-002/0", "tiny-003/0"]
    assert counts["rows"] == 5 and counts["skipped_no_targets"] == 1 and counts["examples"] == 4

    continuation = examples[0]
    head, speech, sep = continuation.pieces
    assert head.ids[0] == tokenizer.bos_token_id
    assert _text(tokenizer, head.ids[1:]).startswith("Continue the following text") and _text(
        tokenizer, head.ids).endswith("\n\n")
    assert isinstance(speech, SpeechPiece) and speech.clip == 0 and len(continuation.clips) == 1
    assert _text(tokenizer, sep.ids) == "\n\n"
    assert continuation.target_ids[-1] == tokenizer.eos_token_id
    assert _text(tokenizer, continuation.target_ids[:-1]) == "She wiped the stove and poured the tea."

    interleaved = examples[2]  # speech, text, speech; no prompt
    kinds = [type(p).__name__ for p in interleaved.pieces]
    assert kinds == ["TextPiece", "SpeechPiece", "TextPiece", "SpeechPiece"]  # <bos> alone, then the segments
    assert interleaved.pieces[0].ids == (tokenizer.bos_token_id,)
    assert [p.clip for p in interleaved.pieces if isinstance(p, SpeechPiece)] == [0, 1]
    assert _text(tokenizer, interleaved.pieces[2].ids) == " every morning"
    assert _text(tokenizer, interleaved.target_ids[:-1]) == " The surface warmed faster than the deep water."


def test_transcript_twin_replaces_speech_by_its_text(tiny_build: Path, tokenizer) -> None:
    examples, _ = load_examples(tiny_build, tokenizer, max_target_tokens=32)
    twin = as_transcript(examples[2])
    assert twin.clips == () and len(twin.pieces) == 1 and isinstance(twin.pieces[0], TextPiece)
    assert _text(tokenizer, twin.pieces[0].ids[1:]) == "Scientists measured the lake every morning for a year."
    assert twin.target_ids == examples[2].target_ids


def test_task_filter_and_target_cut_are_counted(tiny_build: Path, tokenizer) -> None:
    examples, counts = load_examples(tiny_build, tokenizer, max_target_tokens=3, tasks=["interleaved"])
    assert [e.task for e in examples] == ["interleaved", "interleaved"]
    assert counts["skipped_task_filter"] == 2 and counts["targets_cut"] == 2
    assert all(len(e.target_ids) == 3 and tokenizer.eos_token_id not in e.target_ids for e in examples)


def test_unknown_task_filter_names_the_tasks_present(tiny_build: Path, tokenizer) -> None:
    with pytest.raises(AlignDataError, match="tasks present: continuation, description, interleaved"):
        load_examples(tiny_build, tokenizer, max_target_tokens=32, tasks=["translation"])


def test_split_filter(tiny_build: Path, tokenizer) -> None:
    with pytest.raises(AlignDataError, match="skipped_split_train"):
        load_examples(tiny_build, tokenizer, max_target_tokens=32, split="test")


def test_folder_without_shards_is_refused(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(AlignDataError, match="has no shards"):
        load_examples(tmp_path, tokenizer, max_target_tokens=32)


def test_unknown_schema_major_is_refused(tiny_build: Path, tmp_path: Path) -> None:
    table = pq.read_table(tiny_build / "shards" / "00000.parquet")
    table = table.replace_schema_metadata({**table.schema.metadata, META_SCHEMA_VERSION: b"9.0"})
    pq.write_table(table, tmp_path / "00000.parquet")
    with pytest.raises(AlignDataError, match="schema version 9.0"):
        list(read_records([tmp_path / "00000.parquet"]))


def test_features_keep_real_length_padded_to_16_frames(tiny_build: Path, tokenizer) -> None:
    examples, _ = load_examples(tiny_build, tokenizer, max_target_tokens=32)
    record = next(r for r in read_records([tiny_build / "shards" / "00000.parquet"]) if r.id == "tiny-000")
    featurize = Featurizer(WhisperFeatureExtractor(feature_size=80), max_audio_s=30.0)
    [feats] = collate([examples[0]], featurize).features
    frames = record.audio[0].num_samples / 160
    assert feats.shape[0] == 80 and feats.shape[1] % 16 == 0 and frames <= feats.shape[1] < frames + 16
    [cut] = collate([examples[0]], Featurizer(WhisperFeatureExtractor(feature_size=80), max_audio_s=1.0)).features
    assert cut.shape[1] == 96  # 1 s = 100 frames, cut down to a whole multiple of 16

