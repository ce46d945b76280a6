"""Output files of an export: atomic and deterministic (no timestamps, sorted keys, fixed tar/gzip headers).

Atomic writes come from ``align_data.files`` (shared with the build), not ``pipeline``: importing ``pipeline``
loads every stage, and the export, like the trainer, only reads shards through ``schemas``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from align_data.files import TMP_MARK, atomic_file, sha256_file

def discard(stack: ExitStack) -> None:
    """Close the files opened with ``atomic_file`` in ``stack`` without moving any of them into place."""
    stack.__exit__(RuntimeError, RuntimeError("export of this shard was aborted"), None)


def write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    with atomic_file(path, fsync=fsync) as handle:
        handle.write(data)


def remove_temporaries(root: Path) -> int:
    """Delete temporary files a killed export left behind; returns how many."""
    stale = [p for p in root.rglob(f".*{TMP_MARK}*") if p.is_file()]
    for path in stale:
        path.unlink()
    return len(stale)


def json_line(obj: Any) -> bytes:
    """One JSON line with sorted keys and UTF-8 text: the same object always gives the same bytes."""
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n").encode()


def json_document(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=1) + "\n").encode()


def describe_files(root: Path, rel_paths: list[str]) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} for files under ``root``: what a completion marker records."""
    return {rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size}
            for rel in sorted(rel_paths)}


def verify_files(root: Path, files: dict[str, dict[str, Any]]) -> str | None:
    """The first reason the recorded files are not intact, or None."""
    for rel, meta in files.items():
        path = root / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != meta["bytes"] or sha256_file(path) != meta["sha256"]:
            return f"{rel} does not match its recorded sha256"
    return None


@contextmanager
def gzip_stream(handle: IO[bytes]) -> Iterator[IO[bytes]]:
    """gzip without a file name or timestamp in its header, so the bytes depend on the content only."""
    with gzip.GzipFile(fileobj=handle, mode="wb", filename="", mtime=0) as gz:
        yield gz


def audio_rel_path(shard_id: int, clip_id: str) -> str:
    """Where a clip's FLAC lives in an audio tree: one folder per source shard keeps folders small."""
    return f"audio/{shard_id:05d}/{clip_id}.flac"


class AudioTree:
    """Writes a shard's clips as FLAC files under ``audio/NNNNN/`` and gives the path a manifest should hold."""

    def __init__(self, out: Path, shard_id: int, absolute: bool) -> None:
        self.out, self.shard_id, self.absolute = out, shard_id, absolute
        self.written: list[str] = []

    def write(self, clip_id: str, flac: bytes) -> str:
        """Write the clip's FLAC bytes as they are in the build (no re-encoding); return its manifest path."""
        rel = audio_rel_path(self.shard_id, clip_id)
        write_bytes(self.out / rel, flac, fsync=False)
        self.written.append(rel)
        return str((self.out / rel).resolve()) if self.absolute else rel


def concat_files(root: Path, parts: list[str], dest: Path) -> None:
    """Join part files (in the order given) into ``dest`` atomically, streaming."""
    with atomic_file(dest) as out:
        for rel in parts:
            with open(root / rel, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    out.write(block)
