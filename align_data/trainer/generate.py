"""Greedy responses of the speech LM to an example's input (speech, or its transcript), with a KV cache."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from align_data.trainer.data import Example, Featurizer, collate
from align_data.trainer.model import SpeechLM

STOP_TEXT = "\n"  # build targets are one line (the targets stage keeps an answer's first line)


def prompt_embeddings(model: SpeechLM, example: Example, featurize: Featurizer) -> torch.Tensor:
    """(1, L, H) LM input for the example's pieces alone: the response is what gets generated."""
    eos = example.target_ids[-1]
    # A one-token target adds no input position (SpeechLM embeds target[:-1]), so assemble gives the prompt only.
    batch = collate([replace(example, target_ids=(eos,))], featurize)
    with torch.no_grad():
        return model.assemble(batch).embeds


@torch.no_grad()
def greedy_ids(lm: Any, embeds: torch.Tensor, *, max_new_tokens: int, eos_token_id: int | None,
               tokenizer: Any = None, stop_text: str | None = STOP_TEXT) -> list[int]:
    """Argmax decoding from input embeddings (one example) until eos, a token containing ``stop_text``, or the
    token budget; the stopping token is not returned."""
    mask = torch.ones(1, embeds.shape[1], dtype=torch.long, device=embeds.device)
    out = lm(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
    ids: list[int] = []
    for _ in range(max_new_tokens):
        next_id = int(out.logits[0, -1].argmax())
        if next_id == eos_token_id:
            break
        if stop_text and tokenizer is not None and stop_text in tokenizer.decode([next_id]):
            break
        ids.append(next_id)
        if len(ids) == max_new_tokens:
            break
        mask = torch.cat([mask, mask.new_ones(1, 1)], dim=1)
        out = lm(input_ids=torch.tensor([[next_id]], device=embeds.device), attention_mask=mask,
                 past_key_values=out.past_key_values, use_cache=True)
    return ids


def respond(model: SpeechLM, example: Example, featurize: Featurizer, tokenizer: Any, max_new_tokens: int) -> str:
    """The model's greedy response to ``example``'s input, decoded and stripped."""
    embeds = prompt_embeddings(model, example, featurize)
    ids = greedy_ids(model.lm, embeds, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                     tokenizer=tokenizer)
    return tokenizer.decode(ids, skip_special_tokens=True).strip()
