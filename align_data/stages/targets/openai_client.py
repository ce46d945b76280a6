"""The openai backend: any OpenAI-compatible server's /completions or /chat/completions, many requests in flight, transient
failures retried with backoff, the rest returned as record errors, and a dead server stopping the build."""

from __future__ import annotations

import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit, urlunsplit

from align_data.config import LLMConfig
from align_data.errors import ServiceUnavailable
from align_data.stages.base import RecordError
from align_data.stages.targets.client import Completion, Outcome, Prompt, Sampling
from align_data.stages.targets.openai_api import MalformedResponse, build_payload, parse_completion

CONNECT_TIMEOUT_S = 10.0
REFUSED_STATUSES = (401, 403, 404)  # wrong key, no access, unknown model or path: every row would fail alike


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one try failed: the record error kind, whether to retry, whether it says the service is unusable."""

    kind: str
    message: str
    transient: bool
    service: bool  # unreachable, timed out, or refused as unauthorized / unknown model
    retry_after: float | None = None


def public_url(url: str) -> str:
    """The URL without user:password and query (where keys sometimes hide): safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OpenAIClient:
    """POSTs one /completions (``llm.endpoint``: or /chat/completions) request per prompt from a pool of ``llm.concurrency`` threads over one
    connection pool. The API key comes from the environment variable named by ``llm.api_key_env``; it is
    sent as a header and scrubbed from every message this client produces."""

    backend = "openai"

    def __init__(self, config: LLMConfig, transport: Any = None):
        import httpx

        self.config = config
        self.model_name = config.model
        self.chat = config.endpoint == "chat"
        self.url = config.base_url.rstrip("/") + ("/chat/completions" if self.chat else "/completions")
        self.public_url = public_url(self.url)
        key = os.environ.get(config.api_key_env, "").strip()
        self._secrets = tuple(s for s in (key, urlsplit(self.url).password) if s)
        self._http = httpx.Client(
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=httpx.Timeout(config.timeout_s, connect=min(CONNECT_TIMEOUT_S, config.timeout_s)),
            limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency),
            transport=transport)
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="llm-request")
        self._lock = threading.Lock()
        self._down = threading.Event()
        self._streak = 0  # requests in a row that ended in a service failure
        self._last_service_failure = ""
        self._random = random.Random()
        self.retries = 0  # tries repeated after a transient failure (read by CachedClient for usage)

    def complete(self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int]) -> list[Outcome]:
        """Answers in prompt order; raises ServiceUnavailable once max_consecutive_failures requests in a row
        could not reach the server (or were refused as unauthorized / unknown model)."""
        self._raise_if_down()
        futures = [self._pool.submit(self._one, build_payload(self.model_name, p, sampling, s, self.chat))
                   for p, s in zip(prompts, seeds, strict=True)]
        outcomes = [f.result() for f in futures]
        self._raise_if_down()
        return outcomes

    def close(self) -> None:
        self._down.set()  # wakes threads sleeping in a backoff
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _raise_if_down(self) -> None:
        if self._down.is_set():
            raise ServiceUnavailable(self._redact(
                f"LLM server {self.public_url} is unavailable: {self.config.max_consecutive_failures} requests in "
                f"a row failed after {self.config.max_retries} retries each (last: {self._last_service_failure}). "
                f"Start the server or fix llm.base_url, llm.model or the key in ${self.config.api_key_env}; "
                "the build stops rather than write a corpus of error records."))

    def _one(self, payload: dict[str, Any]) -> Outcome:
        """One prompt: tries until an answer, a permanent failure, or the retries run out."""
        tries = 0
        while True:
            if self._down.is_set():
                return RecordError("llm_unavailable", f"{self.public_url} was given up as unavailable")
            tries += 1
            result = self._try(payload)
            if isinstance(result, Completion):
                with self._lock:
                    self._streak = 0
                return result
            if not result.transient or tries > self.config.max_retries:
                break
            with self._lock:
                self.retries += 1
            self._down.wait(self._delay(tries, result.retry_after))
        self._note_failure(result)
        return RecordError(result.kind, self._redact(f"{result.message} ({tries} tries, {self.public_url})"))

    def _try(self, payload: dict[str, Any]) -> Completion | Failure:
        import httpx

        try:
            response = self._http.post(self.url, json=payload)
        except httpx.TimeoutException as exc:
            return Failure("llm_timeout", f"no answer within llm.timeout_s={self.config.timeout_s}s "
                                          f"({type(exc).__name__})", transient=True, service=True)
        except httpx.TransportError as exc:  # refused, reset, or the body cut short
            return Failure("llm_connection", f"{type(exc).__name__}: {exc}", transient=True, service=True)
        status = response.status_code
        if status == 200:
            try:
                return parse_completion(response.content, self.chat)
            except MalformedResponse as exc:
                return Failure("llm_bad_response", f"malformed answer: {exc}", transient=True, service=False)
        message = f"HTTP {status}: {response.text[:200].strip()!r}"
        if status in (408, 429) or status >= 500:
            return Failure(f"llm_http_{status}", message, transient=True, service=False,
                           retry_after=_retry_after(response.headers.get("retry-after")))
        return Failure(f"llm_http_{status}", message, transient=False, service=status in REFUSED_STATUSES)

    def _note_failure(self, failure: Failure) -> None:
        with self._lock:
            if not failure.service:
                self._streak = 0  # the server answered: it is up, this row is the problem
                return
            self._streak += 1
            self._last_service_failure = f"{failure.kind}: {failure.message}"
            if self._streak >= self.config.max_consecutive_failures:
                self._down.set()

    def _delay(self, tries: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor (both capped)."""
        cap = self.config.retry_backoff_max_s
        delay = self._random.uniform(0, min(cap, self.config.retry_backoff_s * 2 ** (tries - 1)))
        return max(delay, min(cap, retry_after)) if retry_after is not None else delay

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: backoff applies)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
