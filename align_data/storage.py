"""Where a build's files live: a local folder, or any fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``file://…``).

Local folders (and ``file://`` URLs) keep the temporary-file-then-rename writes of ``files.atomic_file``. An object
store has no rename: each file is written to a local spool, hashed there, then uploaded in one put, so an object
appears whole or not at all; the shard sidecar, uploaded after the shard's files, is what marks a shard complete.

Credentials and endpoints come from the environment as each backend reads it (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>``) and from the config's ``storage.options``; no
message here ever includes those options.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from align_data.errors import AlignDataError
from align_data.faults import crash_point
from align_data.files import TMP_MARK, atomic_file, sha256_file, sha256_stream

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# stores whose "folders" are key prefixes: nothing to create before a put, and a makedirs could create a bucket
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"}
SPOOL_PREFIX = "align-data-upload-"
_REMEMBERED = 16  # hashes of the latest uploads kept for file_meta (a shard has five files)

Options = dict[str, dict[str, Any]]  # fsspec storage options per protocol, e.g. {"s3": {"endpoint_url": ...}}


def protocol_of(path: str | Path) -> str | None:
    """The URL scheme of ``path`` (``"s3"``), or None for a plain local path."""
    match = _SCHEME.match(str(path))
    return match.group(1).lower() if match else None


def local_path(path: str | Path) -> Path | None:
    """``path`` as a local Path (a plain path or a ``file://`` URL), or None when it names a remote store."""
    protocol = protocol_of(path)
    if protocol is None:
        return Path(path)
    if protocol in ("file", "local"):
        return Path(str(path).split("://", 1)[1])
    return None


def filesystem(url: str, options: Options | None = None) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path inside it; unknown protocols and missing backend packages
    are user errors that say what to install."""
    import fsspec
    from fsspec.registry import known_implementations

    protocol = protocol_of(url) or "file"
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise AlignDataError(f"{url}: unknown storage protocol {protocol!r}; use a local path or a URL fsspec "
                             "knows (s3://, gs://, az://, file://, ...)") from exc
    except ImportError as exc:  # fsspec knows the protocol; its backend package is not installed
        module = known_implementations.get(protocol, {}).get("class", "").split(".", 1)[0]
        hint = f"pip install {module}" if module and module != "fsspec" else "install the package it names"
        if protocol in ("s3", "s3a"):
            hint += " (or pip install 'align-data[s3]')"
        raise AlignDataError(f"{url}: the {protocol}:// filesystem is not installed ({exc}); {hint}") from exc
    try:
        fs = cls(**(options or {}).get(protocol, {}))
    except TypeError as exc:  # an option the backend does not take (the message names it, not its value)
        raise AlignDataError(f"storage.options.{protocol}: {exc}") from exc
    return fs, fs._strip_protocol(url)


def local_work_dir(root: str | Path) -> Path:
    """A local folder for what cannot live in a store (the LLM response cache is SQLite): the build folder
    itself when it is local, else a folder of this machine's cache named after the URL."""
    local = local_path(root)
    if local is not None:
        return local
    from align_data.models.cache import cache_dir

    return cache_dir() / "stores" / hashlib.sha256(str(root).encode()).hexdigest()[:16]


def expand_inputs(pattern: str, options: Options | None = None) -> list[str]:
    """Files matching a local glob or a URL glob (``s3://bucket/texts/*.txt``), sorted; URLs stay URLs."""
    if local_path(pattern) is not None:
        import glob

        return sorted(glob.glob(str(local_path(pattern))))
    fs, path = filesystem(pattern, options)
    try:
        found = fs.glob(path) if any(c in path for c in "*?[") else ([path] if fs.isfile(path) else [])
    except OSError as exc:
        raise AlignDataError(f"cannot list {pattern}: {exc}") from exc
    return sorted(fs.unstrip_protocol(p) for p in found)


def open_binary(path: str, options: Options | None = None) -> IO[bytes]:
    """A source file opened for ranged binary reads (seek + read): a local file, or an fsspec file whose reads are
    HTTP range requests, so only the bytes asked for travel."""
    if local_path(path) is not None:
        return open(local_path(path), "rb")
    fs, inner = filesystem(path, options)
    return fs.open(inner, "rb", block_size=1 << 20, cache_type="readahead")


def input_size(path: str, options: Options | None = None) -> int:
    if local_path(path) is not None:
        return os.path.getsize(local_path(path))
    fs, inner = filesystem(path, options)
    return fs.size(inner)


class Store:
    """A build folder whose files are named relative to its root, local or behind an fsspec URL."""

    def __init__(self, root: str | Path, options: Options | None = None):
        self.root = str(root)
        self.local = local_path(root)
        if self.local is not None:
            from fsspec.implementations.local import LocalFileSystem

            self.fs, self.base = LocalFileSystem(), str(self.local.absolute())
        else:
            self.fs, path = filesystem(self.root, options)
            self.base = path.rstrip("/")
        self.protocol = protocol_of(root) or "file"
        self._written: dict[str, dict] = {}

    def __str__(self) -> str:
        return self.root

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (what ``self.fs`` and pyarrow's ``filesystem=`` take)."""
        return f"{self.base}/{rel}" if rel else self.base

    def url(self, rel: str = "") -> str:
        """How messages name ``rel``: the user's own spelling of the root, then ``rel``."""
        if self.local is not None and protocol_of(self.root) is None:
            return str(Path(self.root) / rel) if rel else self.root
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def _fresh(self) -> Any:
        # other processes (workers) write here: never answer from a directory listing cached earlier
        self.fs.invalidate_cache()
        return self.fs

    def exists(self, rel: str = "") -> bool:
        return self._fresh().exists(self.path(rel))

    def isdir(self, rel: str = "") -> bool:
        return self._fresh().isdir(self.path(rel))

    def isfile(self, rel: str = "") -> bool:
        return self._fresh().isfile(self.path(rel))

    def size(self, rel: str) -> int:
        return self._fresh().size(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self._fresh().cat_file(self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def open(self, rel: str) -> IO[bytes]:
        """A binary reader (seekable) for pyarrow, tarfile and the like."""
        if self.local is not None:
            return open(self.path(rel), "rb")
        return self._fresh().open(self.path(rel), "rb")

    def sha256(self, rel: str) -> str:
        if self.local is not None:
            return sha256_file(Path(self.path(rel)))
        with self.open(rel) as handle:
            return sha256_stream(handle)

    def file_meta(self, rel: str) -> dict:
        """sha256 and size of a file: remembered from the upload this store just made, else read back."""
        if rel in self._written:
            return self._written.pop(rel)
        return {"sha256": self.sha256(rel), "bytes": self.size(rel)}

    def files(self, folder: str) -> list[str]:
        """Every file and subfolder under ``folder``, as sorted paths relative to the root."""
        fs = self._fresh()
        if not fs.isdir(self.path(folder)):
            return []
        top = self.path(folder).rstrip("/")
        return sorted(p[len(self.base) + 1:] for p in fs.find(top, withdirs=True) if p.rstrip("/") != top)

    def is_empty(self) -> bool:
        try:
            return not self._fresh().ls(self.base, detail=False)
        except (FileNotFoundError, NotADirectoryError):  # nothing there yet (a file in the way fails the write check)
            return True

    def remove(self, rel: str) -> None:
        """Delete a file or a whole folder; nothing there is fine."""
        fs = self._fresh()
        if fs.isdir(self.path(rel)):
            fs.rm(self.path(rel), recursive=True)
        elif fs.exists(self.path(rel)):
            fs.rm_file(self.path(rel))

    @contextmanager
    def writer(self, rel: str, fsync: bool = True) -> Iterator[IO[bytes]]:
        """Write ``rel`` so that no reader ever sees it half-written: rename into place locally; on a remote
        store spool it locally, hash it, and upload it in one put (nothing appears if the upload fails)."""
        if self.local is not None:
            with atomic_file(Path(self.path(rel)), fsync=fsync) as handle:
                yield handle
            return
        spool = tempfile.NamedTemporaryFile(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", delete=False)
        try:
            with spool:
                yield spool
            meta = {"sha256": sha256_file(Path(spool.name)), "bytes": os.path.getsize(spool.name)}
            crash_point("write:before_upload")
            if self.protocol not in _OBJECT_STORES:
                self.fs.makedirs(self.fs._parent(self.path(rel)), exist_ok=True)
            self.fs.put_file(spool.name, self.path(rel))
        finally:
            os.unlink(spool.name)
        crash_point("write:after_upload")
        self._written[rel] = meta
        while len(self._written) > _REMEMBERED:  # a shard's files are asked for right after their upload
            del self._written[next(iter(self._written))]

    def check_writable(self) -> None:
        """Create the root (local) and prove a file can be written there, before any work is done."""
        probe = f".write-probe-{os.getpid()}"
        try:
            if self.local is not None:
                self.local.mkdir(parents=True, exist_ok=True)
                (self.local / probe).write_bytes(b"ok")
                (self.local / probe).unlink()
                return
            if self.protocol not in _OBJECT_STORES:
                self.fs.makedirs(self.base, exist_ok=True)
            self.fs.pipe_file(self.path(probe), b"ok")
            self.fs.rm_file(self.path(probe))
        except OSError as exc:
            raise AlignDataError(f"cannot write to the output folder {self.root}: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from exc

    def temp_leftovers(self) -> list[str]:
        """Temporary files that a killed local write left (an upload leaves nothing in the store)."""
        if self.local is None:
            return []
        return [str(p.relative_to(self.local)) for folder in ("", "shards", "errors", "filtered")
                if (self.local / folder).is_dir() for p in (self.local / folder).glob(f".*{TMP_MARK}*")]


def as_store(where: Store | str | Path, options: Options | None = None) -> Store:
    """``where`` itself when it is a Store, else the Store rooted there."""
    return where if isinstance(where, Store) else Store(where, options)
