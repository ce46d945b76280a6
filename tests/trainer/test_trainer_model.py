"""The adapters' shapes and scale, the loss covers exactly the target tokens, accumulation, KL, bf16 dtypes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from align_data.errors import AlignDataError
from align_data.trainer import TrainConfig
from align_data.trainer.adapters import QFormerAdapter, adapter_from_metadata
from align_data.trainer.data import Featurizer, TextPiece, as_transcript, collate, load_examples
from align_data.trainer.loop import StepLosses, accumulate
from align_data.trainer.model import (
    Adapter,
    EncoderCache,
    FrozenModels,
    SpeechLM,
    autocast_dtype,
    build_adapter,
    load_frozen_models,
    resolve_device,
)


@pytest.fixture(scope="module")
def frozen(tiny_models: tuple[Path, Path]) -> FrozenModels:
    whisper, llm = tiny_models
    return load_frozen_models(TrainConfig(whisper=str(whisper), llm=str(llm)), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def speech_lm(frozen: FrozenModels) -> SpeechLM:
    return SpeechLM(frozen.encoder, build_adapter(frozen.encoder, frozen.lm, seed=0), frozen.lm)


@pytest.mark.parametrize("frames", [8, 96, 150, 1500])
def test_adapter_downsamples_8x_to_lm_width(frames: int) -> None:
    adapter = Adapter(64, 48)
    out = adapter(torch.randn(2, frames, 64))
    assert out.shape == (2, -(-frames // 8), 48)
    assert adapter.output_frames(frames) == out.shape[1]


def test_adapter_has_blsp_layout() -> None:
    adapter = Adapter(512, 640)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in adapter.convs] == [
        (512, 1024, (5,), (2,))] * 3
    # whisper-base → Gemma 270M: the 8.2M trainable parameters measured for the BLSP step in MODELS.md.
    assert sum(p.numel() for p in adapter.parameters() if p.requires_grad) == 8_196_992


def test_speech_enters_at_token_embedding_scale(frozen: FrozenModels, speech_lm: SpeechLM) -> None:
    embed = frozen.lm.get_input_embeddings()
    assert float(embed.embed_scale) == pytest.approx(8.0)  # Gemma multiplies by sqrt(hidden) itself
    with torch.no_grad():
        token_rms = float(embed(torch.arange(512)).pow(2).mean().sqrt())
        speech_rms = float(speech_lm.adapter(torch.randn(1, 40, 64)).pow(2).mean().sqrt())
    assert token_rms > 0.5  # sqrt(64) × init std 0.1; an unscaled table would give ~0.1
    assert speech_rms == pytest.approx(token_rms, rel=0.05)


def test_only_target_tokens_are_scored(frozen: FrozenModels, speech_lm: SpeechLM, tiny_build: Path) -> None:
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    batch = collate(examples[:2], Featurizer(frozen.extractor, 30.0))
    inputs = speech_lm.assemble(batch)
    with torch.no_grad():
        nll = speech_lm.token_nll(batch)
        full = frozen.lm(inputs_embeds=inputs.embeds, attention_mask=inputs.attention_mask).logits
    assert nll.shape[0] == sum(len(t) for t in batch.targets) == int(inputs.keep.sum())
    expected = []
    for b, target in enumerate(batch.targets):
        positions = inputs.keep[b].nonzero().flatten()
        assert int(positions[-1]) + 1 == int(inputs.attention_mask[b].sum())  # the last kept predicts the eos
        expected.append(F.cross_entropy(full[b, positions], target, reduction="none"))
    torch.testing.assert_close(nll, torch.cat(expected), rtol=1e-4, atol=1e-4)


def test_older_transformers_positions_path_scores_the_same_tokens(frozen: FrozenModels, speech_lm: SpeechLM,
                                                                   tiny_build: Path, monkeypatch) -> None:
    """transformers 5.17 (the GPU image's) takes no boolean logits_to_keep mask: the 1-D positions path scores
    each row's own target positions, padded rows of different prefix lengths included."""
    import align_data.trainer.model as model

    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    batch = collate(examples, Featurizer(frozen.extractor, 30.0))
    monkeypatch.setattr(model, "BOOLEAN_LOGITS_TO_KEEP", False)
    inputs = speech_lm.assemble(batch)
    with torch.no_grad():
        nll = speech_lm.token_nll(batch)
        full = frozen.lm(inputs_embeds=inputs.embeds, attention_mask=inputs.attention_mask).logits
    assert len({int(row.nonzero()[0]) for row in inputs.keep}) > 1  # the rows keep different positions
    expected = F.cross_entropy(full[inputs.keep], torch.cat(batch.targets), reduction="none")
    torch.testing.assert_close(nll, expected, rtol=1e-4, atol=1e-4)


def test_batching_with_right_padding_keeps_each_examples_loss(frozen: FrozenModels, speech_lm: SpeechLM,
                                                               tiny_build: Path) -> None:
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    featurize = Featurizer(frozen.extractor, 30.0)
    with torch.no_grad():
        alone = [speech_lm.token_nll(collate([ex], featurize)) for ex in examples]
        together = speech_lm.token_nll(collate(examples, featurize))
    assert len({speech_lm.assemble(collate([ex], featurize)).embeds.shape[1] for ex in examples}) > 1  # padded
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-4, atol=1e-4)


def test_text_input_path_matches_the_lms_own_input_ids_path(frozen: FrozenModels, speech_lm: SpeechLM,
                                                             tiny_build: Path) -> None:
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    example = as_transcript(examples[1])
    [prefix] = example.pieces
    ids = torch.tensor([prefix.ids + example.target_ids])
    with torch.no_grad():
        nll = speech_lm.token_nll(collate([example], Featurizer(frozen.extractor, 30.0)))
        logits = frozen.lm(input_ids=ids).logits[0]
    start = len(prefix.ids) - 1
    reference = F.cross_entropy(logits[start: start + len(example.target_ids)], torch.tensor(example.target_ids),
                                reduction="none")
    torch.testing.assert_close(nll, reference, rtol=1e-4, atol=1e-4)


def test_only_the_adapter_gets_gradients(frozen: FrozenModels, speech_lm: SpeechLM, tiny_build: Path) -> None:
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    speech_lm.adapter.zero_grad()
    speech_lm(collate(examples[:2], Featurizer(frozen.extractor, 30.0))).backward()
    assert all(p.grad is not None for p in speech_lm.adapter.parameters())
    assert not any(p.requires_grad for p in [*frozen.encoder.parameters(), *frozen.lm.parameters()])


@pytest.mark.parametrize("frames", [8, 150])
def test_qformer_gives_a_fixed_number_of_vectors_per_clip(frames: int) -> None:
    adapter = QFormerAdapter(64, 48, queries=16, layers=2, heads=4, out_scale=2.0)
    out = adapter(torch.randn(3, frames, 64))
    assert out.shape == (3, 16, 48) and adapter.output_frames(frames) == 16
    assert float(out.detach().pow(2).mean().sqrt()) == pytest.approx(2.0, rel=0.05)  # LayerNorm × out_scale
    rebuilt = adapter_from_metadata(adapter.shape_metadata())
    assert isinstance(rebuilt, QFormerAdapter) and rebuilt.shape_metadata() == adapter.shape_metadata()
    with pytest.raises(AlignDataError, match="does not divide"):
        QFormerAdapter(64, 48, heads=6)


def test_qformer_speech_lm_step_trains_every_adapter_parameter(frozen: FrozenModels, tiny_build: Path) -> None:
    config = TrainConfig(adapter="qformer", qformer_queries=8, qformer_layers=1, qformer_heads=4)
    adapter = build_adapter(frozen.encoder, frozen.lm, seed=0, config=config)
    model = SpeechLM(frozen.encoder, adapter, frozen.lm)
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    batch = collate(examples[1:3], Featurizer(frozen.extractor, 30.0))  # interleaved: 1 and 2 clips
    inputs = model.assemble(batch)
    text = [sum(len(p.ids) for p in ex.pieces if isinstance(p, TextPiece)) for ex in examples[1:3]]
    assert inputs.attention_mask.sum(1).tolist() == [t + 8 * len(ex.clips) + len(ex.target_ids) - 1
                                                     for t, ex in zip(text, examples[1:3])]
    model(batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters())


def test_grad_accumulation_equals_one_big_batch(frozen: FrozenModels, speech_lm: SpeechLM, tiny_build: Path) -> None:
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    featurize = Featurizer(frozen.extractor, 30.0)
    texts = [collate([as_transcript(e) for e in part], featurize) for part in (examples[:2], examples[2:])]

    def grads(micro, text_micro) -> tuple[StepLosses, list[torch.Tensor]]:
        speech_lm.adapter.zero_grad()
        losses = accumulate(speech_lm, micro, text_micro, kl_weight=0.5)
        return losses, [p.grad.clone() for p in speech_lm.adapter.parameters()]

    big, big_grads = grads([collate(examples, featurize)], [collate([as_transcript(e) for e in examples], featurize)])
    two, two_grads = grads([collate(examples[:2], featurize), collate(examples[2:], featurize)], texts)
    assert big.tokens == two.tokens and big.loss == pytest.approx(two.loss, rel=1e-5)
    assert big.kl == pytest.approx(two.kl, rel=1e-4)
    for a, b in zip(big_grads, two_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_kl_to_the_text_input_distribution(frozen: FrozenModels, speech_lm: SpeechLM, tiny_build: Path) -> None:
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    featurize = Featurizer(frozen.extractor, 30.0)
    text = collate([as_transcript(e) for e in examples], featurize)
    with torch.no_grad():
        nll, kl = speech_lm.token_losses(collate(examples, featurize), text)
        _, self_kl = speech_lm.token_losses(text, text)
        plain, none = speech_lm.token_losses(collate(examples, featurize))
    assert none is None and kl.shape == nll.shape and bool((kl > 0).all())
    torch.testing.assert_close(nll, plain)
    torch.testing.assert_close(self_kl, torch.zeros_like(self_kl), atol=1e-5, rtol=0)


def test_bf16_frozen_models_keep_an_fp32_adapter(tiny_models: tuple[Path, Path], tiny_build: Path) -> None:
    assert autocast_dtype(torch.device("cuda"), torch.bfloat16) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), torch.float32) is None
    assert autocast_dtype(torch.device("cpu"), torch.bfloat16) is None  # CPU runs bf16 weights without autocast
    whisper, llm = tiny_models
    config = TrainConfig(whisper=str(whisper), llm=str(llm))
    models = load_frozen_models(config, torch.device("cpu"), torch.bfloat16)
    adapter = build_adapter(models.encoder, models.lm, seed=0).to(dtype=torch.float32)
    model = SpeechLM(models.encoder, adapter, models.lm)
    examples, _ = load_examples(tiny_build, models.tokenizer, max_target_tokens=32)
    batch = collate(examples[:2], Featurizer(models.extractor, 30.0))
    assert model.speech_embeddings(batch.features)[0].dtype == torch.bfloat16  # enters the LM in its dtype
    model(batch).backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in adapter.parameters())
    with pytest.raises(AlignDataError, match="bfloat16 on cpu"):
        resolve_device(config.model_copy(update={"device": "cpu", "dtype": "bfloat16"}))


def test_encoder_cache_gives_the_states_it_would_compute(frozen: FrozenModels, tiny_build: Path) -> None:
    """Cached encoder states equal fresh ones (each clip is encoded alone either way), the second pass over the same
    clips is all hits, and a budget too small for a clip keeps nothing."""
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    batch = collate(examples, Featurizer(frozen.extractor, 30.0))
    adapter = build_adapter(frozen.encoder, frozen.lm, seed=0)
    plain = SpeechLM(frozen.encoder, adapter, frozen.lm)
    cache = EncoderCache(64 * 2**20)
    cached = SpeechLM(frozen.encoder, adapter, frozen.lm, cache)
    with torch.no_grad():
        want = plain.speech_embeddings(batch.features)
        first = cached.speech_embeddings(batch.features)
        assert cache.misses == len(batch.features) and cache.hits == 0 and cache.bytes > 0
        again = cached.speech_embeddings(batch.features)
    assert cache.hits == len(batch.features) and cache.misses == len(batch.features)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(want, first, again, strict=True))
    tight = EncoderCache(1)
    with torch.no_grad():
        SpeechLM(frozen.encoder, adapter, frozen.lm, tight).speech_embeddings(batch.features)
    assert tight.states == {} and tight.bytes == 0 and tight.misses == len(batch.features)
