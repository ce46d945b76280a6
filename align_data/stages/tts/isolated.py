"""Run an in-process TTS engine in a child process, so a hang can be killed and a crash is one row's error."""

from __future__ import annotations

import importlib
import multiprocessing as mp
from typing import Any

from align_data.stages.base import RecordError


def _serve(factory: str, kwargs: dict[str, Any], conn: Any) -> None:
    """Child process: build the engine once, then answer (method, args, kwargs) requests until EOF."""
    module, name = factory.split(":")
    engine = getattr(importlib.import_module(module), name)(**kwargs)
    while True:
        try:
            method, args, kw = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", getattr(engine, method)(*args, **kw)))
        except RecordError as exc:
            conn.send(("record_error", (exc.kind, str(exc))))
        except Exception as exc:  # sent back to the parent, which raises it there
            conn.send(("error", exc))


class IsolatedEngine:
    """Proxy for an engine built from ``factory`` ('module:Class') in a spawned child process.

    ``synthesize`` that runs over ``timeout_s`` kills the child and fails only that row (``tts_timeout``);
    a child that dies fails that row (``tts_engine_crashed``); the next call starts a fresh child."""

    def __init__(self, factory: str, timeout_s: float, **kwargs: Any):
        self.factory = factory
        self.kwargs = kwargs
        self.timeout_s = timeout_s
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # no fork after torch/onnxruntime threads exist
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(self.factory, self.kwargs, child), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def _call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if self._proc is None or not self._proc.is_alive():
            self._stop()
            self._start()
        try:
            self._conn.send((method, args, kwargs))
            ready = self._conn.poll(timeout)
        except OSError as exc:  # the child died before reading (e.g. the engine failed to build)
            self._stop()
            raise RecordError("tts_engine_crashed", f"{self.factory} is not running: {exc}") from exc
        if not ready:
            self._stop()
            raise RecordError("tts_timeout", f"{self.factory} ran over {timeout}s; the engine was restarted")
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._stop()
            raise RecordError("tts_engine_crashed", f"{self.factory} died; the engine was restarted") from exc
        if status == "record_error":
            raise RecordError(*value)
        if status == "error":
            raise value
        return value

    def check(self) -> None:
        module, name = self.factory.split(":")
        getattr(importlib.import_module(module), name)(**self.kwargs).check()

    def load(self) -> None:
        """Start the child and load the engine there (loading may take longer than one text)."""
        self._call("load", timeout=max(self.timeout_s, 300.0))

    def voices(self) -> list[dict]:
        return self._call("voices", timeout=max(self.timeout_s, 300.0))

    def synthesize(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("synthesize", *args, timeout=self.timeout_s, **kwargs)

    def close(self) -> None:
        self._stop()

    def __del__(self) -> None:
        self._stop()
