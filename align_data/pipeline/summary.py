"""What ``inspect`` shows: the manifest's totals and one shard's rows, as plain data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.pipeline.writers import shard_name


def load_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        raise AlignDataError(f"{out_dir} has no manifest.json: not a finished align-data build "
                             "(run `align-data build ... --resume` to finish it)")
    return json.loads(path.read_text())


def shard_rows(out_dir: str | Path, shard_id: int, limit: int) -> list[dict]:
    """The first ``limit`` rows of a shard, without audio bytes."""
    path = Path(out_dir) / "shards" / f"{shard_name(shard_id)}.parquet"
    if not path.exists():
        raise AlignDataError(f"shard {shard_id} does not exist in {out_dir} ({path.name} missing)")
    columns = ["id", "task", "text", "segments", "voice", "paralinguistics", "description", "targets"]
    table = pq.read_table(path, columns=columns)
    return table.slice(0, limit).to_pylist()


def shard_errors(out_dir: str | Path, shard_id: int, limit: int) -> list[dict]:
    path = Path(out_dir) / "errors" / f"{shard_name(shard_id)}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()[:limit]]


def expected_voice_shares(out_dir: str | Path) -> dict[str, dict[str, float]]:
    """The configured share of each voice, backend and gender (from the build's config.json weights).

    A coqui '*' entry (every speaker of the model) stays one key, ``coqui:*``; see ``fold_wildcard_voices``."""
    path = Path(out_dir) / "config.json"
    if not path.exists():
        return {}
    voices = json.loads(path.read_text())["config"]["tts"]["voices"]
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
