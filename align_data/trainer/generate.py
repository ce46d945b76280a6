"""Greedy responses of the speech LM to examples' inputs (speech, or their transcripts), with a KV cache, one
example at a time or many in one left-padded batch."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

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


class _Stops:
    """Whether a token ends a response: the eos id, or a token whose text holds ``stop_text`` (decoded once)."""

    def __init__(self, eos_token_id: int | None, tokenizer: Any, stop_text: str | None) -> None:
        self.eos, self.tokenizer, self.text = eos_token_id, tokenizer, stop_text
        self.seen: dict[int, bool] = {}

    def __call__(self, token: int) -> bool:
        if token == self.eos:
            return True
        if not self.text or self.tokenizer is None:
            return False
        if token not in self.seen:
            self.seen[token] = self.text in self.tokenizer.decode([token])
        return self.seen[token]


@torch.no_grad()
def greedy_ids(lm: Any, embeds: torch.Tensor, *, max_new_tokens: int, eos_token_id: int | None,
               tokenizer: Any = None, stop_text: str | None = STOP_TEXT) -> list[int]:
    """Argmax decoding from input embeddings (one example) until eos, a token containing ``stop_text``, or the
    token budget; the stopping token is not returned."""
    return greedy_batch(lm, [embeds[0]], max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                        tokenizer=tokenizer, stop_text=stop_text)[0]


@torch.no_grad()
def greedy_batch(lm: Any, prompts: Sequence[torch.Tensor], *, max_new_tokens: int, eos_token_id: int | None,
                 tokenizer: Any = None, stop_text: str | None = STOP_TEXT) -> list[list[int]]:
    """Argmax decoding of several prompts ((L_i, H) input embeddings) at once: left-padded to the longest, each
    row at its own positions (the padding masked and not counted), one decode step for all rows until every
    row has stopped (eos, a token containing ``stop_text``, or the budget). A row's tokens are those it would get
    alone, up to float rounding of the batched matmuls."""
    stops = _Stops(eos_token_id, tokenizer, stop_text)
    longest = max(p.shape[0] for p in prompts)
    first = prompts[0]
    embeds = first.new_zeros(len(prompts), longest, first.shape[-1])
    mask = torch.zeros(len(prompts), longest, dtype=torch.long, device=first.device)
    for row, prompt in enumerate(prompts):
        embeds[row, longest - prompt.shape[0]:] = prompt
        mask[row, longest - prompt.shape[0]:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    following = positions[:, -1:] + 1
    ids: list[list[int]] = [[] for _ in prompts]
    live = [max_new_tokens > 0] * len(prompts)
    for _ in range(max_new_tokens):
        chosen = out.logits[:, -1].argmax(-1)
        for row, token in enumerate(chosen.tolist()):
            if not live[row]:
                continue
            if stops(token):
                live[row] = False
                continue
            ids[row].append(token)
            live[row] = len(ids[row]) < max_new_tokens
        if not any(live):
            break
        mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
        out = lm(input_ids=chosen.unsqueeze(1), attention_mask=mask, position_ids=following,
                 past_key_values=out.past_key_values, use_cache=True)
        following = following + 1
    return ids


def respond(model: SpeechLM, example: Example, featurize: Featurizer, tokenizer: Any, max_new_tokens: int) -> str:
    """The model's greedy response to ``example``'s input, decoded and stripped."""
    return respond_batch(model, [example], featurize, tokenizer, max_new_tokens)[0]


def respond_batch(model: SpeechLM, examples: Sequence[Example], featurize: Featurizer, tokenizer: Any,
                  max_new_tokens: int) -> list[str]:
    """The model's greedy responses to ``examples``' inputs, decoded in one batch and stripped."""
    prompts = [prompt_embeddings(model, ex, featurize)[0] for ex in examples]
    rows = greedy_batch(model.lm, prompts, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                        tokenizer=tokenizer)
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in rows]
