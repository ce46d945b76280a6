"""Shard writers: Parquet, WebDataset tar, error/filtered JSONL, then the sidecar — each atomic (a rename into
place locally, one whole upload on an object store)."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import IO

import pyarrow.parquet as pq

from align_data.faults import crash_point
from align_data.files import add_tar_member
from align_data.pipeline.stages import ShardResult
from align_data.schemas import SCHEMA_VERSION, Record, records_to_table
from align_data.schemas.arrow import record_to_row
from align_data.schemas.sidecar import ShardSidecar, error_line
from align_data.storage import Store, as_store


def shard_name(shard_id: int) -> str:
    return f"{shard_id:05d}"


def record_json(record: Record) -> dict:
    """The record as JSON for the WebDataset sample (audio bytes live in the .flac members)."""
    row = record_to_row(record)
    row.pop("audio")
    return row


def write_tar(handle: IO[bytes], rows: list[Record]) -> None:
    """WebDataset tar: ``<key>.json`` then ``<key>.flac`` (first clip) and ``<key>.<i>.flac`` (clip i>0)."""
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for record in rows:
            meta = json.dumps(record_json(record), sort_keys=True, ensure_ascii=False).encode()
            add_tar_member(tar, f"{record.id}.json", meta)
            for i, clip in enumerate(record.audio):
                add_tar_member(tar, f"{record.id}.flac" if i == 0 else f"{record.id}.{i}.flac", clip.flac)


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(x, sort_keys=True, ensure_ascii=False) + "\n" for x in lines).encode()


def _filter_message(record: Record) -> str:
    return f"filtered: {record.filtered}" + (f" ({record.filter_note})" if record.filter_note else "")


def write_shard(store: Store | str | Path, result: ShardResult, config_hash: str) -> ShardSidecar:
    """Write every file of a shard, then its sidecar (the completion marker) last."""
    store = as_store(store)
    name = shard_name(result.spec.shard_id)
    rows = [r for r in result.records if r.live]
    errors = [r for r in result.records if r.error is not None]
    filtered = [r for r in result.records if r.error is None and r.filtered is not None]
    files = {
        f"shards/{name}.parquet": None,
        f"shards/{name}.tar": None,
        f"errors/{name}.jsonl": None,
        f"filtered/{name}.jsonl": None,
    }
    with store.writer(f"shards/{name}.parquet") as handle:
        pq.write_table(records_to_table(rows, config_hash), handle, compression="zstd")
    crash_point("write:between_files")
    with store.writer(f"shards/{name}.tar") as handle:
        write_tar(handle, rows)
    with store.writer(f"errors/{name}.jsonl") as handle:
        handle.write(_jsonl([error_line(r.id, r.shard_id, r.error.stage, r.error.kind, r.error.message,
                                        record_to_row(r)["source"], r.text, r.task) for r in errors]))
    with store.writer(f"filtered/{name}.jsonl") as handle:
        handle.write(_jsonl([error_line(r.id, r.shard_id, result.filtered_by.get(r.id, "unknown"), r.filtered,
                                        _filter_message(r), record_to_row(r)["source"], r.text, r.task)
                             for r in filtered]))
    for rel in files:
        files[rel] = store.file_meta(rel)
    tasks = Counter(r.task for r in rows)
    splits = Counter(r.split for r in rows)
    voiced = [r.voice for r in rows if r.voice is not None]
    genders = Counter(v.gender for v in voiced)
    voices = Counter(f"{v.backend}:{v.voice_id}" for v in voiced)
    sidecar = ShardSidecar(
        shard_id=result.spec.shard_id, schema_version=SCHEMA_VERSION, config_hash=config_hash,
        input_docs=result.docs_read, candidates=len(result.records), rows=len(rows),
        errors=len(errors), filtered=len(filtered),
        audio_seconds=round(sum(c.duration_s for r in rows for c in r.audio), 3),
        tasks=dict(sorted(tasks.items())), voices=dict(sorted(voices.items())), splits=dict(sorted(splits.items())),
        genders=dict(sorted(genders.items())),
        stages=result.stages, files=files, seconds=result.seconds, plan_key=result.spec.key(),
    )
    with store.writer(f"shards/{name}.json") as handle:
        handle.write(json.dumps(sidecar.to_json(), sort_keys=True, indent=1).encode())
    return sidecar
