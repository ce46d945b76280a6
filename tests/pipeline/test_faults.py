"""Faults outside the data: the LLM server down, an unwritable or full disk. Clean failures, nothing half-done."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from align_data.errors import AlignDataError
from align_data.pipeline.build import build
from align_data.pipeline.manifest import load_sidecar, verify_shard
from align_data.pipeline.validate import validate_build
from tests.conftest import make_config


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_llm_server_down_stops_the_build_with_one_message(tmp_path, corpus_file, runner):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    cfg = make_config(corpus_file, interleave={"task_weights": {"continuation": 1.0}},
                      llm={"backend": "openai", "model": "gemma", "base_url": url, "max_retries": 1,
                           "retry_backoff_s": 0.01, "max_consecutive_failures": 2},
                      shards={"docs_per_shard": 1})
    try:
        with pytest.raises(AlignDataError, match=rf"build stopped: .*{url}") as info:
            build(cfg, tmp_path / "out", runner=runner)
    finally:
        if runner == "ray":
            import ray

            ray.shutdown()
    assert "complete" in str(info.value) and "--resume" in str(info.value)
    errors = list((tmp_path / "out" / "errors").glob("*.jsonl")) if (tmp_path / "out" / "errors").exists() else []
    assert not any(path.read_text() for path in errors)  # no corpus of error records was written


def test_unwritable_output_folder_is_a_clear_error(tmp_path, corpus_file, interleaved_config):
    if os.geteuid() == 0:
        pytest.skip("root writes through directory permissions")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(AlignDataError, match="cannot write"):
            build(interleaved_config, out / "build")
    finally:
        out.chmod(0o700)


def test_output_path_under_a_file_is_a_clear_error(tmp_path, interleaved_config):
    (tmp_path / "file").write_text("x")
    with pytest.raises(AlignDataError, match="cannot write"):
        build(interleaved_config, tmp_path / "file" / "out")


class _FillingDisk:
    """Files opened through it share ``budget`` bytes; past that a write fails as on a full disk (ENOSPC).
    (``ulimit -f`` is no substitute here: it also kills espeak-ng children with SIGXFSZ.)"""

    def __init__(self, budget: int):
        self.budget = budget

    def open(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" not in mode and "a" not in mode:
            return handle
        disk, write = self, handle.write

        def limited(data):
            if len(data) > disk.budget:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            disk.budget -= len(data)
            return write(data)

        handle.write = limited
        return handle


def test_full_disk_fails_cleanly_and_leaves_no_shard_looking_complete(tmp_path, corpus_file, monkeypatch):
    from align_data import files  # atomic_file, where every build file is opened

    cfg = make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}}, shards={"docs_per_shard": 1})
    out = tmp_path / "out"
    disk = _FillingDisk(budget=150_000)  # config, plan and about one shard fit (schema 1.3 shards are larger)
    monkeypatch.setattr(files, "open", disk.open, raising=False)
    failed = build(cfg, out).failed  # the CLI exits 1 and says: rerun with --resume
    assert failed and all("No space left on device" in message for message in failed.values())
    complete = [sid for sid in range(3) if load_sidecar(out, sid) is not None]
    assert len(complete) == 3 - len(failed)
    for sid in complete:  # a shard with a sidecar is whole; the others have none
        assert verify_shard(out, sid, cfg.hash()) == []
    assert validate_build(out) != []
    assert not list(out.rglob(".*.tmp-*"))  # each failed write removed its temporary file
    monkeypatch.undo()  # space again: resume finishes the build
    summary = build(cfg, out, resume=True)
    assert summary.skipped == len(complete) and validate_build(out) == []


def test_a_bad_whisper_path_stops_the_build_before_any_shard(tmp_path, corpus_file):
    cfg = make_config(corpus_file, quality={"enabled": True, "model": str(tmp_path / "no-whisper")})
    with pytest.raises(AlignDataError, match="not an HF Whisper folder"):
        build(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "shards").exists()
