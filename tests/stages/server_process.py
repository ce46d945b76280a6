"""Start a real OpenAI-compatible server process for a test, wait until it answers /models, stop it afterwards."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


@contextmanager
def openai_server_process(command: list[str], port: int, name: str, *, timeout_s: float, stop_s: float = 15.0,
                          env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``command`` (a server listening on 127.0.0.1:``port``); yields its base URL (…/v1) once /models answers.

    A server that exits or does not answer within ``timeout_s`` fails with the tail of its log; on the way out it
    gets SIGTERM, then SIGKILL after ``stop_s``.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{name} did not start: {log.read()[-3000:].decode(errors='replace')}")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=stop_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
