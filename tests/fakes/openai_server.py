"""Fault injection only: a local OpenAI-compatible /v1/completions (and /v1/chat/completions) server that fails
on request.

Each request takes the next fault from a script (global, or per prompt substring); "ok" answers with a short
text derived from the prompt so tests can tell answers apart. Faults:

    ok             200, a completion
    slow           200 after ``delay_s`` (a busy server; used to see requests overlap)
    hang           no answer for ``hang_s`` (the client times out first)
    500 / 503      HTTP error, retryable
    429            rate limited, with Retry-After: 0
    400 / 401 / 404  permanent refusals
    malformed      200 with a body that is not JSON
    no-choices     200 with JSON that is not a completion
    truncated      200 whose body stops before its Content-Length
    disconnect     the connection closes without an answer
    echo-auth      HTTP 500 whose body repeats the request's Authorization header (a leaky proxy)

    python tests/fakes/openai_server.py --port 8011 --delay-s 0.2   # serve "slow" forever (benchmarks)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A port nothing listens on (after the probe socket closes): also the 'connection refused' address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer_for(prompt: str) -> str:
    return f" answer-{hashlib.sha1(prompt.encode()).hexdigest()[:8]}"


class FakeOpenAIServer:
    """Context manager: starts on a free port in a thread; ``url`` is the base URL (…/v1)."""

    def __init__(self, script: list[str] | None = None, by_prompt: dict[str, list[str]] | None = None,
                 default: str = "ok", delay_s: float = 0.0, hang_s: float = 5.0, port: int | None = None):
        self.script = list(script or [])
        self.by_prompt = {k: list(v) for k, v in (by_prompt or {}).items()}
        self.default = default
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []  # {"payload", "authorization", "fault"} per request
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port or 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_fault(self, prompt: str) -> str:
        with self._lock:
            for needle, faults in self.by_prompt.items():
                if needle in prompt:
                    return faults.pop(0) if faults else self.default
            return self.script.pop(0) if self.script else self.default


def prompt_of(payload: dict[str, Any]) -> str:
    """The prompt text of a completions request, or the chat turns' contents of a chat request."""
    if "messages" in payload:
        return "\n".join(str(m.get("content", "")) for m in payload["messages"])
    return str(payload.get("prompt", ""))


def _completion(payload: dict[str, Any]) -> bytes:
    prompt = prompt_of(payload)
    if "messages" in payload:
        choice = {"index": 0, "message": {"role": "assistant", "content": answer_for(prompt)}, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": answer_for(prompt), "finish_reason": "stop", "logprobs": None}
    return json.dumps({
        "id": "cmpl-fake", "object": "text_completion", "created": 0, "model": payload.get("model"),
        "choices": [choice],
        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 2,
                  "total_tokens": len(prompt.split()) + 2},
    }).encode()


def _handler(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  declared: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if declared is None else declared))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            payload = json.loads(body)
            fault = server.next_fault(prompt_of(payload))
            auth = self.headers.get("Authorization", "")
            with server._lock:
                server.requests.append({"payload": payload, "authorization": auth, "fault": fault, "path": self.path})
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._fault(fault, payload, auth)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _fault(self, fault: str, payload: dict[str, Any], auth: str) -> None:
            if fault in ("ok", "slow"):
                if fault == "slow" or server.delay_s:
                    time.sleep(server.delay_s)
                self._send(200, _completion(payload))
            elif fault == "hang":
                time.sleep(server.hang_s)
                self.close_connection = True
            elif fault == "429":
                self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
            elif fault in ("400", "401", "404", "500", "503"):
                self._send(int(fault), json.dumps({"error": {"message": f"fault {fault}"}}).encode())
            elif fault == "echo-auth":
                self._send(500, json.dumps({"error": f"upstream rejected header Authorization: {auth}"}).encode())
            elif fault == "malformed":
                self._send(200, b'{"choices": [{"text": "half')
            elif fault == "no-choices":
                self._send(200, b'{"object": "error", "message": "overloaded"}')
            elif fault == "truncated":
                full = _completion(payload)
                self._send(200, full[: len(full) // 2], declared=len(full))
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif fault == "disconnect":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                raise ValueError(f"unknown fault {fault!r}")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--delay-s", type=float, default=0.2)
    args = parser.parse_args()
    with FakeOpenAIServer(default="slow", delay_s=args.delay_s, port=args.port) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
