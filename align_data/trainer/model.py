"""BLSP-style speech LM: frozen Whisper encoder → trainable adapter (conv/GLU or Q-Former) → frozen causal LM."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers.modeling_utils
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    WhisperFeatureExtractor,
    WhisperModel,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from align_data.errors import AlignDataError
from align_data.models.whisper import encode_short
from align_data.trainer.adapters import Adapter, QFormerAdapter, SpeechAdapter
from align_data.trainer.config import TrainConfig
from align_data.trainer.data import Batch, SpeechPiece, TextPiece


# transformers releases with modeling_utils.slice_logits_to_keep take a boolean (batch, length) mask as
# ``logits_to_keep``; 5.17 indexes the sequence axis with it and fails
BOOLEAN_LOGITS_TO_KEEP = hasattr(transformers.modeling_utils, "slice_logits_to_keep")


@dataclass(slots=True)
class Assembled:
    """A batch as LM input: right-padded embeddings, attention mask, the positions that predict targets, labels."""

    embeds: torch.Tensor  # (B, L, H)
    attention_mask: torch.Tensor  # (B, L) long
    keep: torch.Tensor  # (B, L) bool: position p predicts the target token at p+1
    labels: torch.Tensor  # (N,) target ids, in the row-major order of ``keep``


class EncoderCache:
    """The frozen encoder's output per clip, keyed by a digest of the clip's features and kept up to ``max_bytes``:
    the encoder never changes, so from the second epoch on (and for every untrained adapter an evaluation scores
    beside the trained one) a clip's states are read instead of computed. Clips past the budget are encoded each
    time they come."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.states: dict[bytes, torch.Tensor] = {}
        self.bytes = self.hits = self.misses = 0

    def get(self, features: torch.Tensor, encode: Any) -> torch.Tensor:
        """The states of one clip's (mels, frames) ``features``; ``encode`` computes them on a miss."""
        key = hashlib.blake2b(features.detach().cpu().numpy().tobytes(), digest_size=16).digest()
        found = self.states.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        states = encode(features)
        size = states.numel() * states.element_size()
        if self.bytes + size <= self.max_bytes:
            self.states[key] = states
            self.bytes += size
        return states

    @classmethod
    def for_config(cls, config: TrainConfig) -> EncoderCache | None:
        """The cache ``encoder_cache_mb`` asks for; None when it is 0 (off)."""
        return cls(config.encoder_cache_mb * 2**20) if config.encoder_cache_mb else None

    def stats(self) -> dict[str, float | int]:
        """Clips and MiB held, hits and misses so far."""
        return {"clips": len(self.states), "mb": round(self.bytes / 2**20, 1), "hits": self.hits,
                "misses": self.misses}


class SpeechLM(nn.Module):
    """Frozen Whisper encoder + trainable adapter + frozen causal LM; only the adapter gets gradients.

    Each clip is encoded alone (its states never depend on which clips share its batch, so they can be cached and a
    resumed run reads what an uninterrupted one computed); ``encoder_cache`` keeps them across steps."""

    def __init__(self, encoder: WhisperEncoder, adapter: SpeechAdapter, lm: PreTrainedModel,
                 encoder_cache: EncoderCache | None = None) -> None:
        super().__init__()
        self.encoder, self.adapter, self.lm = encoder, adapter, lm
        self.encoder_cache = encoder_cache
        for frozen in (encoder, lm):
            frozen.requires_grad_(False)
            frozen.eval()

    def train(self, mode: bool = True) -> SpeechLM:
        """Set the adapter's mode; the frozen models always stay in eval mode (no dropout)."""
        self.training = mode
        self.adapter.train(mode)
        return self

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    def encode_clip(self, features: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's (frames/2, d) states of one clip's (mels, frames) features."""
        with torch.no_grad():
            return encode_short(self.encoder, features.unsqueeze(0).to(self.device))[0]

    def speech_embeddings(self, features: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """One (n_i, hidden) adapter output per clip; clips of equal length go through the adapter together."""
        cache = self.encoder_cache
        states = [cache.get(f, self.encode_clip) if cache is not None else self.encode_clip(f) for f in features]
        groups: dict[int, list[int]] = defaultdict(list)
        for i, feats in enumerate(features):
            groups[feats.shape[-1]].append(i)
        out: list[torch.Tensor | None] = [None] * len(features)
        lm_dtype = self.lm.get_input_embeddings().weight.dtype
        for indices in groups.values():
            encoded = torch.stack([states[i] for i in indices])
            adapted = self.adapter(encoded.float()).to(lm_dtype)
            for row, i in enumerate(indices):
                out[i] = adapted[row]
        return [o for o in out if o is not None]

    def assemble(self, batch: Batch) -> Assembled:
        """Embed each example's pieces in order (text by the LM table, speech by the adapter), then its target."""
        speech = self.speech_embeddings(batch.features)
        embed = self.lm.get_input_embeddings()
        device = self.device
        rows: list[torch.Tensor] = []
        prefix_lengths: list[int] = []
        for pieces, target in zip(batch.pieces, batch.targets, strict=True):
            parts = []
            for piece in pieces:
                if isinstance(piece, TextPiece):
                    parts.append(embed(torch.tensor(piece.ids, dtype=torch.long, device=device)))
                elif isinstance(piece, SpeechPiece):
                    parts.append(speech[piece.clip])
            prefix_lengths.append(sum(p.shape[0] for p in parts))
            parts.append(embed(target[:-1].to(device)))  # the last target token is predicted, never input
            rows.append(torch.cat(parts))
        length = max(r.shape[0] for r in rows)
        embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
        attention_mask = torch.zeros(len(rows), length, dtype=torch.long, device=device)
        keep = torch.zeros(len(rows), length, dtype=torch.bool, device=device)
        for b, (row, prefix, target) in enumerate(zip(rows, prefix_lengths, batch.targets, strict=True)):
            embeds[b, : row.shape[0]] = row
            attention_mask[b, : row.shape[0]] = 1
            keep[b, prefix - 1: prefix - 1 + target.shape[0]] = True
        labels = torch.cat(batch.targets).to(device)
        return Assembled(embeds, attention_mask, keep, labels)

    def autocast(self) -> AbstractContextManager[None]:
        """bf16 autocast when the frozen models are bf16 on a GPU (the adapter's fp32 weights compute in bf16
        there); nothing otherwise."""
        dtype = autocast_dtype(self.device, self.lm.get_input_embeddings().weight.dtype)
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def target_logits(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, vocab) at the N positions that predict target tokens, and the target ids (N,).

        Where transformers takes a boolean (batch, length) ``logits_to_keep``, only those positions are projected
        onto the vocabulary; older 5.x releases (5.17, the GPU image's) take 1-D positions only, so there the
        positions any row keeps are projected and each row's own are picked from them."""
        with self.autocast():
            inputs = self.assemble(batch)
            keep = inputs.keep if BOOLEAN_LOGITS_TO_KEEP else inputs.keep.any(0).nonzero().squeeze(1)
            out = self.lm(inputs_embeds=inputs.embeds, attention_mask=inputs.attention_mask,
                          logits_to_keep=keep, use_cache=False)
        logits = out.logits if BOOLEAN_LOGITS_TO_KEEP else out.logits[inputs.keep[:, keep]]
        logits = logits.reshape(-1, logits.shape[-1])
        if logits.shape[0] != inputs.labels.shape[0]:
            raise RuntimeError(f"the LM returned {logits.shape[0]} logits for {inputs.labels.shape[0]} targets; "
                               "it must support a `logits_to_keep` tensor of positions (transformers >= 5)")
        return logits, inputs.labels

    def token_nll(self, batch: Batch) -> torch.Tensor:
        """Negative log-likelihood of every target token (N,), with logits computed only at target positions."""
        logits, labels = self.target_logits(batch)
        return F.cross_entropy(logits.float(), labels, reduction="none")

    def token_losses(self, batch: Batch, text_batch: Batch | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per target token: NLL given ``batch``, and KL(text-input distribution ‖ speech-input distribution) when
        ``text_batch`` (the same examples with transcripts, see ``as_transcript``) is given (BLSP-Emo)."""
        logits, labels = self.target_logits(batch)
        log_probs = F.log_softmax(logits.float(), dim=-1)
        nll = -log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        if text_batch is None:
            return nll, None
        with torch.no_grad():
            text_logits, text_labels = self.target_logits(text_batch)
            teacher = F.log_softmax(text_logits.float(), dim=-1)
        if not torch.equal(text_labels, labels):
            raise RuntimeError("the text-input batch has other targets than the speech batch")
        return nll, (teacher.exp() * (teacher - log_probs)).sum(-1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Mean target-token loss of the batch."""
        return self.token_nll(batch).mean()


def autocast_dtype(device: torch.device, frozen_dtype: torch.dtype) -> torch.dtype | None:
    """The autocast dtype for frozen models of ``frozen_dtype`` on ``device``: bf16 on CUDA, none elsewhere (CPU
    runs fp32: bf16 there was impractically slow)."""
    return torch.bfloat16 if device.type == "cuda" and frozen_dtype == torch.bfloat16 else None


def embedding_rms(lm: PreTrainedModel, sample: int = 8192) -> float:
    """RMS of the LM's input embeddings as the model sees them (Gemma scales by sqrt(hidden) inside)."""
    embed = lm.get_input_embeddings()
    vocab = embed.weight.shape[0]
    ids = torch.arange(0, vocab, max(1, vocab // sample), device=embed.weight.device)
    with torch.no_grad():
        return float(embed(ids).float().pow(2).mean().sqrt())


def resolve_device(config: TrainConfig) -> tuple[torch.device, torch.dtype]:
    """The device and the frozen models' dtype the config asks for, refusing what cannot run well."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise AlignDataError("device=cuda but torch sees no CUDA GPU; use device=cpu or auto")
    device = torch.device("cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if config.dtype == "bfloat16" and device.type == "cpu":
        raise AlignDataError("dtype=bfloat16 on cpu is impractically slow here; use dtype=float32 (or auto)")
    if config.dtype == "auto":
        return device, torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, getattr(torch, config.dtype)


def _model_path(value: str, kind: str) -> Path:
    """The folder of the ``whisper`` or ``llm`` setting; 'embedded' prepares the bundled model once."""
    if value == "embedded":
        if kind == "whisper":
            from align_data.models.whisper import prepare_whisper

            return prepare_whisper()
        from align_data.models.gemma import prepare_gemma

        return prepare_gemma()
    path = Path(value).expanduser()
    if not (path / "config.json").is_file():
        raise AlignDataError(f"{kind}={value!r} is not a HF model folder (no config.json); "
                             f"give a save_pretrained folder or 'embedded'")
    return path


@dataclass(slots=True)
class FrozenModels:
    """The loaded frozen parts and their preprocessors."""

    encoder: WhisperEncoder
    extractor: WhisperFeatureExtractor
    lm: PreTrainedModel
    tokenizer: Any


def load_frozen_models(config: TrainConfig, device: torch.device, dtype: torch.dtype) -> FrozenModels:
    """Load the Whisper encoder (decoder dropped), its feature extractor, the causal LM and its tokenizer."""
    whisper_path, llm_path = _model_path(config.whisper, "whisper"), _model_path(config.llm, "llm")
    encoder = WhisperModel.from_pretrained(whisper_path, dtype=dtype).get_encoder().to(device)
    if (whisper_path / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(whisper_path)
    else:
        extractor = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins)
    if extractor.feature_size != encoder.config.num_mel_bins:
        raise AlignDataError(f"{whisper_path}: feature extractor makes {extractor.feature_size} mel bins but the "
                             f"encoder takes {encoder.config.num_mel_bins}; fix preprocessor_config.json")
    lm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(llm_path)
    return FrozenModels(encoder, extractor, lm, tokenizer)


def build_adapter(encoder: WhisperEncoder, lm: PreTrainedModel, seed: int,
                  config: TrainConfig | None = None) -> SpeechAdapter:
    """A freshly initialised adapter of the configured kind (default conv) from the encoder width to the LM width,
    seeded (global RNG untouched)."""
    config = config or TrainConfig()
    dims = encoder.config.d_model, lm.get_input_embeddings().weight.shape[1]
    scale = embedding_rms(lm)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.adapter == "qformer":
            return QFormerAdapter(*dims, queries=config.qformer_queries, layers=config.qformer_layers,
                                  heads=config.qformer_heads, out_scale=scale)
        return Adapter(*dims, out_scale=scale)
