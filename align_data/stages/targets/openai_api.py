"""The OpenAI /completions and /chat/completions protocols as pure functions: the request body for a prompt, the
answer in a body."""

from __future__ import annotations

import json
from typing import Any

from align_data.stages.targets.client import Completion, Prompt, Sampling


class MalformedResponse(ValueError):
    """A 200 answer that is not a completion (not JSON, cut short, no choices[0].text): retried."""


def build_payload(model: str, prompt: Prompt, sampling: Sampling, seed: int, chat: bool = False) -> dict[str, Any]:
    """The JSON body of one POST /completions (the few-shot text) or, with ``chat``, /chat/completions (the chat
    turns; the server applies the model's chat template).

    The seed is sent even for greedy decoding: servers ignore it there, and it pins sampling otherwise."""
    payload: dict[str, Any] = {"model": model, "max_tokens": sampling.max_new_tokens,
                               "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": seed,
                               "n": 1, "stream": False}
    if chat:
        payload["messages"] = prompt.messages()
    else:
        payload["prompt"] = prompt.text
    if sampling.stop:
        payload["stop"] = list(sampling.stop)
    return payload


def parse_completion(body: bytes, chat: bool = False) -> Completion:
    """The first choice's text (chat: its message content), finish reason and token usage; MalformedResponse for
    anything else."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedResponse(f"the body is not JSON ({exc.__class__.__name__}: {exc}; "
                                f"{len(body)} bytes, starts {body[:60]!r})") from None
    if not isinstance(data, dict):
        raise MalformedResponse(f"the body is a JSON {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("the body has no choices")
    if chat:
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise MalformedResponse("choices[0].message.content is missing or not a string")
    else:
        text = choices[0].get("text")
        if not isinstance(text, str):
            raise MalformedResponse("choices[0].text is missing or not a string")
    reason = choices[0].get("finish_reason")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Completion(text=text, finish_reason=reason if isinstance(reason, str) and reason else "unknown",
                      tokens_in=_count(usage.get("prompt_tokens")), tokens_out=_count(usage.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
