"""What ``inspect`` shows: the manifest's totals and one shard's rows, as plain data (from a folder or a URL)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.pipeline.writers import shard_name
from align_data.storage import as_store


def load_manifest(out_dir: str | Path) -> dict:
    try:
        return json.loads(as_store(out_dir).read_text("manifest.json"))
    except FileNotFoundError:
        raise AlignDataError(f"{out_dir} has no manifest.json: not a finished align-data build "
                             "(run `align-data build ... --resume` to finish it)") from None


def shard_rows(out_dir: str | Path, shard_id: int, limit: int) -> list[dict]:
    """The first ``limit`` rows of a shard, without audio bytes."""
    store, rel = as_store(out_dir), f"shards/{shard_name(shard_id)}.parquet"
    if not store.exists(rel):
        raise AlignDataError(f"shard {shard_id} does not exist in {out_dir} ({shard_name(shard_id)}.parquet missing)")
    columns = ["id", "task", "text", "segments", "voice", "paralinguistics", "description", "targets", "provenance"]
    with store.open(rel) as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
        table = pq.read_table(handle, columns=[c for c in columns if c in names])  # 1.2 shards: no provenance
    return table.slice(0, limit).to_pylist()


def shard_errors(out_dir: str | Path, shard_id: int, limit: int) -> list[dict]:
    try:
        text = as_store(out_dir).read_text(f"errors/{shard_name(shard_id)}.jsonl")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines()[:limit]]


def expected_voice_shares(out_dir: str | Path) -> dict[str, dict[str, float]]:
    """The configured share of each voice, backend and gender (from the build's config.json weights).

    A coqui '*' entry (every speaker of the model) stays one key, ``coqui:*``; see ``fold_wildcard_voices``."""
    try:
        voices = json.loads(as_store(out_dir).read_text("config.json"))["config"]["tts"]["voices"]
    except FileNotFoundError:
        return {}
    total = sum(v["weight"] for v in voices) or 1.0
    shares: dict[str, dict[str, float]] = {"voices": {}, "backends": {}, "genders": {}}
    for v in voices:
        backend = v.get("backend", "espeak")
        for group, key in (("voices", f"{backend}:{v['id']}"), ("backends", backend), ("genders", v["gender"])):
            shares[group][key] = shares[group].get(key, 0.0) + v["weight"] / total
    return shares


def fold_wildcard_voices(counts: dict[str, int], configured: dict[str, float]) -> dict[str, int]:
    """Row counts per voice with the speakers behind a configured ``backend:*`` entry counted under it
    (unless a speaker is also configured by name), so they compare with the configured shares."""
    wildcards = {key.split(":", 1)[0] for key in configured if key.endswith(":*")}
    folded: dict[str, int] = {}
    for key, n in counts.items():
        backend = key.split(":", 1)[0]
        target = f"{backend}:*" if backend in wildcards and key not in configured else key
        folded[target] = folded.get(target, 0) + n
    return folded
