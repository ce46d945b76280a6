"""The build being exported: checked to be a finished build, then read shard by shard in small row batches."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.files import sha256_file
from align_data.schemas import Record, check_schema_version, record_from_row
from align_data.schemas.arrow import META_CONFIG_HASH, META_SCHEMA_VERSION
from align_data.schemas.record import TASKS

BATCH_ROWS = 32  # rows decoded into Python objects at a time: memory stays at one batch, not one corpus
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class SourceShard:
    """One finished shard of the build: its Parquet file, that file's sha256 and its counts from the sidecar."""

    shard_id: int
    parquet: Path
    sha256: str
    rows: int
    tasks: dict[str, int]


@dataclass(frozen=True, slots=True)
class SourceCorpus:
    """A finished build folder: manifest, resolved config and its shards in id order."""

    root: Path
    manifest: dict
    config: dict
    shards: tuple[SourceShard, ...]

    @property
    def config_hash(self) -> str:
        return self.manifest["config_hash"]

    @property
    def fingerprint(self) -> str:
        """sha256 over the shards' Parquet hashes: equal for byte-identical builds (the manifest has a timestamp)."""
        digest = hashlib.sha256(self.config_hash.encode())
        for shard in self.shards:
            digest.update(f"{shard.shard_id}:{shard.sha256}\n".encode())
        return digest.hexdigest()

    @property
    def tasks(self) -> dict[str, int]:
        return dict(self.manifest.get("tasks", {}))


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise AlignDataError(f"{path.parent} is not a finished align-data build: {path.name} is missing ({what}); "
                             "pass the --out folder of `align-data build`, or finish it with `build --resume`")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise AlignDataError(f"{path} is not valid JSON ({exc}); rebuild or restore it") from exc


def open_corpus(root: str | Path) -> SourceCorpus:
    """Check that ``root`` is a finished build and list its shards (from the manifest, hashes from the sidecars)."""
    root = Path(root)
    if not root.is_dir():
        raise AlignDataError(f"{root} is not a folder; pass the --out folder of `align-data build`")
    manifest = _read_json(root / "manifest.json", "written when a build finishes")
    config = _read_json(root / "config.json", "the resolved build config")
    check_schema_version(manifest.get("schema_version"), str(root / "manifest.json"))
    if config.get("config_hash") != manifest.get("config_hash"):
        raise AlignDataError(f"{root}: config.json has config hash {config.get('config_hash')} but manifest.json "
                             f"{manifest.get('config_hash')}; the folder mixes two builds, rebuild it")
    shards = []
    for entry in manifest.get("shards", []):
        sid = entry["shard_id"]
        name = f"{sid:05d}"
        sidecar = _read_json(root / "shards" / f"{name}.json", f"sidecar of shard {sid}")
        parquet = root / "shards" / f"{name}.parquet"
        meta = sidecar.get("files", {}).get(f"shards/{name}.parquet")
        if not parquet.exists() or meta is None:
            raise AlignDataError(f"{root}: shard {sid} is in the manifest but shards/{name}.parquet is missing; "
                                 "run `align-data validate` and rebuild it with `build --resume`")
        shards.append(SourceShard(sid, parquet, meta["sha256"], int(sidecar["rows"]), dict(sidecar["tasks"])))
    if not shards:
        raise AlignDataError(f"{root} has no finished shards (manifest lists none); nothing to export")
    return SourceCorpus(root, manifest, config, tuple(sorted(shards, key=lambda s: s.shard_id)))


def check_tasks(corpus: SourceCorpus, tasks: list[str] | None) -> tuple[str, ...]:
    """The tasks to export (default: every task with rows in the build); unknown or absent tasks are errors."""
    present = sorted(t for t, n in corpus.tasks.items() if n > 0)
    if tasks is None:
        return tuple(present)
    wanted = [t.strip() for t in tasks if t.strip()]
    if not wanted:
        raise AlignDataError(f"--tasks is empty; name one or more of: {', '.join(present)}")
    for task in wanted:
        if task not in TASKS and task not in corpus.tasks:
            raise AlignDataError(f"unknown task {task!r}; tasks are {', '.join(TASKS)} "
                                 f"(this build has rows of: {', '.join(present)})")
        if task not in present:
            raise AlignDataError(f"task {task!r} has no rows in {corpus.root} (it has rows of: {', '.join(present)}); "
                                 "drop it from --tasks")
    return tuple(sorted(set(wanted)))


def iter_records(corpus: SourceCorpus, shard: SourceShard, batch_rows: int = BATCH_ROWS) -> Iterator[Record]:
    """The shard's rows in order, ``batch_rows`` at a time, after checking its bytes against the sidecar."""
    if sha256_file(shard.parquet) != shard.sha256:
        raise AlignDataError(f"{shard.parquet} does not match the sha256 in its sidecar: the build is damaged; "
                             "run `align-data validate` and rebuild that shard")
    pf = pq.ParquetFile(shard.parquet)
    meta = pf.schema_arrow.metadata or {}
    check_schema_version(meta.get(META_SCHEMA_VERSION), str(shard.parquet))
    written_with = (meta.get(META_CONFIG_HASH) or b"").decode()
    if written_with != corpus.config_hash:
        raise AlignDataError(f"{shard.parquet} was written with config {written_with}, the manifest says "
                             f"{corpus.config_hash}; rebuild the folder")
    for batch in pf.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            if not _SAFE_ID.match(row["id"]):
                raise AlignDataError(f"{shard.parquet}: row id {row['id']!r} is not usable as a file name")
            yield record_from_row(row)
