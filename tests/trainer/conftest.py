"""Trainer fixtures: a tiny build written by hand (espeak-ng speech, fixed targets) and tiny random-init models."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    PreTrainedTokenizerFast,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

from align_data.schemas import AudioClip, Record, Segment, SourceRef, Target, records_to_table
from align_data.stages.tts.audio import encode_flac, to_mono_16k
from align_data.stages.tts.espeak import EspeakEngine

CONTINUE = "Continue the following text in a coherent and engaging style with less than 40 words."
# (text, [(modality, span)], task, prompt, response): spans cover the text in order.
ROWS = [
    ("The kettle boiled over while she read the morning paper.",
     [("speech", "The kettle boiled over while she read the morning paper.")],
     "continuation", CONTINUE, "She wiped the stove and poured the tea."),
    ("Rain fell on the harbour and the boats rocked in the grey water.",
     [("text", "Rain fell on the harbour"), ("speech", "and the boats rocked"), ("text", "in the grey water.")],
     "interleaved", "", "By night the wind had dropped."),
    ("Scientists measured the lake every morning for a year.",
     [("speech", "Scientists measured the lake"), ("text", "every morning"), ("speech", "for a year.")],
     "interleaved", "", "The surface warmed faster than the deep water."),
    ("The old dog slept by the fire all afternoon.",
     [("speech", "The old dog slept by the fire all afternoon.")],
     "description", "What can you hear from the audio?", "A man says slowly that the old dog slept by the fire."),
]


def speech_clip(text: str, engine: EspeakEngine) -> AudioClip:
    """espeak-ng speech of ``text`` as a 16 kHz FLAC clip."""
    samples, rate = engine.synthesize(text, "en+f2", 175, 50, 100)
    audio = to_mono_16k(samples, rate)
    return AudioClip(flac=encode_flac(audio, 16000), sample_rate=16000, num_samples=len(audio))


def make_records() -> list[Record]:
    """The ROWS as records with fixed ids; one extra row has no targets (the loader must count it)."""
    engine = EspeakEngine()
    engine.check()
    records = []
    for i, (text, spans, task, prompt, response) in enumerate(ROWS):
        segments, audio, pos = [], [], 0
        for modality, span in spans:
            start = text.index(span, pos)
            pos = start + len(span)
            index = None
            if modality == "speech":
                index = len(audio)
                audio.append(speech_clip(span, engine))
            segments.append(Segment(modality, span, start, pos, index))
        target = Target(task, f"{task}-0", prompt, response, "hand", "none", "stop")
        records.append(Record(id=f"tiny-{i:03d}", shard_id=0, source=SourceRef("tiny", f"doc{i}", 0), text=text,
                              task=task, segments=tuple(segments), audio=tuple(audio), targets=(target,)))
    records.append(Record(id="tiny-999", shard_id=0, source=SourceRef("tiny", "doc9", 0), text="No target here.",
                          task="continuation", segments=(Segment("speech", "No target here.", 0, 15, 0),),
                          audio=(speech_clip("No target here.", engine),)))
    return records


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run single-threaded: 2 threads on 2 busy cores made each step ~100× slower here."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build folder with one shard of the hand-made records."""
    root = tmp_path_factory.mktemp("tiny-build")
    (root / "shards").mkdir()
    pq.write_table(records_to_table(make_records(), "test"), root / "shards" / "00000.parquet")
    return root


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with 512 ids trained on the ROWS text; ids 0-3 are pad, eos, bos, unk as in Gemma."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [part for row in ROWS for part in (row[0], row[3], row[4])] + ["\n\n", "No target here."]
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(whisper folder, llm folder) of tiny random-init models saved like real ones."""
    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    whisper = WhisperForConditionalGeneration(WhisperConfig(
        d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80, vocab_size=100, max_source_positions=1500,
        max_target_positions=32, pad_token_id=99, bos_token_id=99, eos_token_id=99, decoder_start_token_id=98))
    whisper.save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")
    lm = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=1024, sliding_window=64,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, initializer_range=0.1))  # 0.02 gives near-flat logits
    lm.save_pretrained(root / "llm")
    _tiny_tokenizer().save_pretrained(root / "llm")
    return root / "whisper", root / "llm"
