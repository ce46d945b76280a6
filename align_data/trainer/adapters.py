"""The two trainable bridges from Whisper states to LM embeddings: BLSP's conv/GLU stack and a DeSTA2-style Q-Former."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from align_data.errors import AlignDataError

ADAPTER_KINDS = ("conv", "qformer")


class Adapter(nn.Module):
    """BLSP adapter: ``layers``× (Conv1d k5 s2 → GLU), 2^layers fewer frames, Linear to the LM width, LayerNorm.

    The LayerNorm output is multiplied by ``out_scale`` (a saved buffer, not trained): the RMS of the LM's
    input token embeddings, so speech and text enter the LM at the same scale.
    """

    kind = "conv"

    def __init__(self, in_dim: int, out_dim: int, *, layers: int = 3, kernel: int = 5, out_scale: float = 1.0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.layers, self.kernel = in_dim, out_dim, layers, kernel
        self.convs = nn.ModuleList(
            nn.Conv1d(in_dim, 2 * in_dim, kernel, stride=2, padding=kernel // 2) for _ in range(layers))
        self.proj = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.register_buffer("out_scale", torch.tensor(float(out_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, in_dim) → (batch, ceil(frames / 2^layers), out_dim)."""
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = F.glu(conv(h), dim=1)
        return self.norm(self.proj(h.transpose(1, 2))) * self.out_scale

    def output_frames(self, frames: int) -> int:
        """How many vectors ``frames`` encoder frames become."""
        for _ in range(self.layers):
            frames = (frames + 2 * (self.kernel // 2) - self.kernel) // 2 + 1
        return frames

    def shape_metadata(self) -> dict[str, str]:
        """The kind and constructor arguments, as safetensors metadata strings."""
        return {"kind": self.kind, "in_dim": str(self.in_dim), "out_dim": str(self.out_dim),
                "layers": str(self.layers), "kernel": str(self.kernel)}


class QFormerAdapter(nn.Module):
    """DeSTA2-style Q-Former: ``queries`` learned vectors attend to themselves and to the encoder states for
    ``layers`` pre-norm transformer-decoder layers, then Linear to the LM width, LayerNorm and ``out_scale``.

    Every clip becomes exactly ``queries`` LM vectors, whatever its length.
    """

    kind = "qformer"

    def __init__(self, in_dim: int, out_dim: int, *, queries: int = 64, layers: int = 2, heads: int = 8,
                 out_scale: float = 1.0) -> None:
        super().__init__()
        if in_dim % heads:
            raise AlignDataError(f"qformer_heads={heads} does not divide the encoder width {in_dim}; pick a divisor")
        self.in_dim, self.out_dim, self.queries, self.layers, self.heads = in_dim, out_dim, queries, layers, heads
        self.query = nn.Parameter(torch.randn(queries, in_dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerDecoderLayer(in_dim, heads, dim_feedforward=4 * in_dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(layers))
        self.final = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.register_buffer("out_scale", torch.tensor(float(out_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, in_dim) → (batch, queries, out_dim)."""
        h = self.query.unsqueeze(0).expand(x.shape[0], -1, -1)
        for block in self.blocks:
            h = block(h, x)
        return self.norm(self.proj(self.final(h))) * self.out_scale

    def output_frames(self, frames: int) -> int:
        """Always ``queries``: the Q-Former's output length does not follow the clip's."""
        return self.queries

    def shape_metadata(self) -> dict[str, str]:
        """The kind and constructor arguments, as safetensors metadata strings."""
        return {"kind": self.kind, "in_dim": str(self.in_dim), "out_dim": str(self.out_dim),
                "queries": str(self.queries), "layers": str(self.layers), "heads": str(self.heads)}


SpeechAdapter = Adapter | QFormerAdapter


def adapter_from_metadata(meta: dict[str, str]) -> SpeechAdapter:
    """An untrained adapter of the kind and shape ``shape_metadata`` recorded (checkpoints before the Q-Former
    have no ``kind``: they are conv adapters)."""
    kind = meta.get("kind", "conv")
    dims = int(meta["in_dim"]), int(meta["out_dim"])
    if kind == "conv":
        return Adapter(*dims, layers=int(meta["layers"]), kernel=int(meta["kernel"]))
    if kind == "qformer":
        return QFormerAdapter(*dims, queries=int(meta["queries"]), layers=int(meta["layers"]), heads=int(meta["heads"]))
    raise AlignDataError(f"adapter kind {kind!r} is unknown to this version (known: {', '.join(ADAPTER_KINDS)}); "
                         "upgrade align-data")
