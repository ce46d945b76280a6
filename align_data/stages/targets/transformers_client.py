"""The transformers backend: batched greedy or seeded-sampling generation that stops at a newline."""

from __future__ import annotations

from pathlib import Path

from align_data.errors import AlignDataError


def resolve_model(name: str) -> Path:
    """'embedded' → the prepared Gemma 3 270M folder (prepared on first use); else a local folder."""
    if name == "embedded":
        from align_data.models.gemma import prepare_gemma

        return prepare_gemma()
    path = Path(name)
    if not (path / "config.json").exists():
        raise AlignDataError(f"llm.model={name!r} is not 'embedded' nor an HF model folder with config.json")
    return path


class TransformersClient:
    """Loads a causal LM once; ``generate`` returns (text, finish_reason) per prompt, in order."""

    backend = "transformers"

    def __init__(self, model: str, threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(model)
        self.model_name = "gemma-3-270m" if model == "embedded" else path.name
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        vocab = self.tokenizer.get_vocab()
        self.stop_ids = sorted({i for t, i in vocab.items() if "\n" in t or t == "<0x0A>"}
                               | {self.tokenizer.eos_token_id})

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[tuple[str, str]]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True)
        sampling = temperature > 0
        kwargs = dict(do_sample=sampling, max_new_tokens=max_new_tokens, eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id)
        if sampling:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
            torch.manual_seed(seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]
        results = []
        stops = set(self.stop_ids)
        for row in new.tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), None)
            tokens = row if cut is None else row[:cut]
            reason = "length" if cut is None else "stop"
            results.append((self.tokenizer.decode(tokens, skip_special_tokens=True), reason))
        return results
