"""Atomic, deterministic file writing shared by the build writers and the export: temporary sibling then
rename, content hashes, tar members with fixed metadata.

Light on purpose (standard library and the crash points), so the export, which reads shards through
``schemas``, can use it without importing ``pipeline`` and with it every stage.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from align_data.faults import crash_point

TMP_MARK = ".tmp-"  # temporary files are ``.<name>.tmp-<pid>``: hidden, and found again by ``.*.tmp-*``


@contextmanager
def atomic_file(path: Path, fsync: bool = True) -> Iterator[IO[bytes]]:
    """Write to a hidden temporary sibling, then rename over ``path``: readers never see a half-written file.

    With ``fsync`` (the default) the data and then the folder entry are flushed to disk. ``fsync=False`` is
    for the export's many small audio files, whose completion marker lists their sha256 and is verified
    before a resumed export trusts them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        crash_point("write:before_rename")
        os.replace(tmp, path)
        crash_point("write:after_rename")
    finally:
        if tmp.exists():
            tmp.unlink()
    if fsync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def sha256_stream(handle: IO[bytes]) -> str:
    """Hex sha256 of what is left in a binary reader, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A tar member with fixed metadata (mtime 0, uid 0, no names): equal data gives equal archives."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
