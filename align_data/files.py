"""Deterministic file pieces shared by the build writers and the export: content hashes and tar members.

Standard library only, so the export (which reads shards through ``schemas``) can use it without importing
``pipeline`` and with it every stage.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A tar member with fixed metadata (mtime 0, uid 0, no names): equal data gives equal archives."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))
