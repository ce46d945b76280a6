"""Check a build folder (local or a URL) end to end: files against sidecars, schema, audio, ids, and the counts
invariant."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.pipeline.manifest import load_sidecar, verify_shard
from align_data.pipeline.plan import ShardSpec, planned_docs
from align_data.pipeline.writers import shard_name
from align_data.schemas.arrow import META_SCHEMA_VERSION, check_schema_version
from align_data.storage import Store, as_store

DURATION_TOLERANCE_S = 0.01


def _read_json(store: Store, name: str) -> dict:
    try:
        return json.loads(store.read_text(name))
    except FileNotFoundError:
        raise AlignDataError(f"{store} is not an align-data build: {name} is missing") from None


def _check_parquet(store: Store, rel: str, shard_id: int, seen: set[str]) -> tuple[list[str], list[dict], float]:
    """Problems in one Parquet shard, its rows' id/task/split/voice, and audio seconds."""
    import soundfile as sf

    problems: list[str] = []
    name = rel.rsplit("/", 1)[-1]
    try:
        with store.open(rel) as handle:
            pf = pq.ParquetFile(handle)
            meta = pf.schema_arrow.metadata or {}
            check_schema_version(meta.get(META_SCHEMA_VERSION), store.url(rel))
            table = pf.read(columns=["id", "task", "split", "voice", "audio", "audio_meta", "paralinguistics"])
    except AlignDataError as exc:
        return [f"shard {shard_id}: {exc}"], [], 0.0
    except (OSError, ValueError) as exc:  # pyarrow: truncated or not Parquet at all
        return [f"shard {shard_id}: {name} is not a readable Parquet file ({exc})"], [], 0.0
    seconds = 0.0
    rows = []
    for row in table.to_pylist():
        rid = row["id"]
        if rid in seen:
            problems.append(f"shard {shard_id}: duplicate id {rid}")
        seen.add(rid)
        clip_seconds = 0.0
        if len(row["audio"]) != len(row["audio_meta"]):
            problems.append(f"shard {shard_id}: {rid}: {len(row['audio'])} clips but "
                            f"{len(row['audio_meta'])} audio_meta entries")
        for clip, meta_row in zip(row["audio"], row["audio_meta"]):  # noqa: B905 (checked above)
            try:
                info = sf.info(io.BytesIO(clip["bytes"]))
            except Exception as exc:  # soundfile's error types vary by libsndfile version
                problems.append(f"shard {shard_id}: {rid}: audio does not decode ({exc})")
                continue
            if info.samplerate != meta_row["sample_rate"] or info.frames != meta_row["num_samples"]:
                problems.append(f"shard {shard_id}: {rid}: audio has {info.frames} samples at "
                                f"{info.samplerate} Hz, metadata says {meta_row['num_samples']} at "
                                f"{meta_row['sample_rate']}")
            clip_seconds += info.frames / info.samplerate
        para = row["paralinguistics"]
        if para is not None and abs(para["duration_s"] - clip_seconds) > DURATION_TOLERANCE_S:
            problems.append(f"shard {shard_id}: {rid}: paralinguistics.duration_s {para['duration_s']} "
                            f"!= audio {clip_seconds:.3f}s")
        seconds += clip_seconds
        rows.append({k: row[k] for k in ("id", "task", "split", "voice")} | {"clips": len(row["audio"])})
    return problems, rows, seconds


def _check_tar(store: Store, rel: str, shard_id: int, rows: list[dict]) -> list[str]:
    """The WebDataset tar holds exactly the Parquet rows: one .json and one .flac per clip each."""
    expected = sorted([f"{r['id']}.json" for r in rows]
                      + [f"{r['id']}.flac" if i == 0 else f"{r['id']}.{i}.flac" for r in rows
                         for i in range(r["clips"])])
    name = rel.rsplit("/", 1)[-1]
    try:
        with store.open(rel) as handle, tarfile.open(fileobj=handle) as tar:
            names = sorted(tar.getnames())
    except (tarfile.TarError, OSError, EOFError) as exc:
        return [f"shard {shard_id}: {name} is not a readable tar ({exc})"]
    if names != expected:
        extra, missing = sorted(set(names) - set(expected)), sorted(set(expected) - set(names))
        return [f"shard {shard_id}: {name} disagrees with the Parquet rows (extra: {extra[:3]}, "
                f"missing: {missing[:3]})"]
    return []


def _check_counts(sidecar, rows: list[dict], shard_id: int) -> list[str]:
    """The sidecar's task, split and voice counts are those of the rows."""
    actual = {
        "tasks": Counter(r["task"] for r in rows),
        "splits": Counter(r["split"] for r in rows),
        "voices": Counter(f"{r['voice']['backend']}:{r['voice']['voice_id']}" for r in rows if r["voice"]),
    }
    return [f"shard {shard_id}: sidecar {name} {dict(sorted(getattr(sidecar, name).items()))} != rows "
            f"{dict(sorted(counts.items()))}"
            for name, counts in actual.items() if Counter(getattr(sidecar, name)) != counts]


def _unknown_files(out: Store, plan: list[dict]) -> list[str]:
    """Files in the build's own folders that no planned shard owns."""
    known = set()
    for spec in plan:
        name = shard_name(spec["shard_id"])
        known |= {f"shards/{name}.parquet", f"shards/{name}.tar", f"shards/{name}.json",
                  f"errors/{name}.jsonl", f"filtered/{name}.jsonl"}
    return [f"unknown file {rel} (not part of the plan)"
            for folder in ("shards", "errors", "filtered") for rel in out.files(folder) if rel not in known]


def _check_manifest(out: Store, sidecars: dict[int, object]) -> list[str]:
    """The manifest sums the sidecars and pins each one by sha256."""
    try:
        manifest = json.loads(out.read_text("manifest.json"))
    except FileNotFoundError:
        return ["manifest.json is missing (the build did not finish)"]
    except ValueError as exc:
        return [f"manifest.json is not valid JSON ({exc})"]
    problems = []
    listed = {entry["shard_id"]: entry for entry in manifest.get("shards", [])}
    for sid, sidecar in sidecars.items():
        entry = listed.get(sid)
        if entry is None:
            problems.append(f"shard {sid}: complete but not in manifest.json")
        elif entry.get("sidecar_sha256") not in (None, out.sha256(f"shards/{shard_name(sid)}.json")):
            problems.append(f"shard {sid}: its sidecar changed after manifest.json was written")
    for key in ("rows", "errors", "filtered", "input_docs", "candidates"):
        total = sum(getattr(sc, key) for sc in sidecars.values())
        if manifest.get(key) != total:
            problems.append(f"manifest.json: {key} {manifest.get(key)} != sum of shard sidecars {total}")
    return problems


def validate_build(out_dir: str | Path | Store) -> list[str]:
    """Every reason the build is not valid; an empty list means valid."""
    out = as_store(out_dir)
    config = _read_json(out, "config.json")
    plan = _read_json(out, "plan.json")["shards"]
    config_hash = config["config_hash"]
    problems: list[str] = []
    seen: set[str] = set()
    sidecars = {}
    docs = 0
    for spec in plan:
        sid = spec["shard_id"]
        shard_problems = verify_shard(out, sid, config_hash, plan_key=ShardSpec(**spec).key())
        problems.extend(shard_problems)
        if shard_problems:
            continue
        sidecar = sidecars[sid] = load_sidecar(out, sid)
        try:
            check_schema_version(sidecar.schema_version, f"shard {sid} sidecar")
        except AlignDataError as exc:
            problems.append(str(exc))
            continue
        planned = planned_docs(spec)
        if planned is not None and sidecar.input_docs != planned:
            problems.append(f"shard {sid}: read {sidecar.input_docs} documents, planned {planned}")
        docs += sidecar.input_docs
        if sidecar.rows + sidecar.errors + sidecar.filtered != sidecar.candidates:
            problems.append(f"shard {sid}: rows {sidecar.rows} + errors {sidecar.errors} + filtered "
                            f"{sidecar.filtered} != input segments {sidecar.candidates}")
        pq_problems, rows, seconds = _check_parquet(out, f"shards/{shard_name(sid)}.parquet", sid, seen)
        problems.extend(pq_problems)
        if len(rows) != sidecar.rows:
            problems.append(f"shard {sid}: Parquet has {len(rows)} rows, sidecar says {sidecar.rows}")
        if not pq_problems:
            problems.extend(_check_tar(out, f"shards/{shard_name(sid)}.tar", sid, rows))
            problems.extend(_check_counts(sidecar, rows, sid))
        if abs(seconds - sidecar.audio_seconds) > DURATION_TOLERANCE_S * max(1, len(rows)):
            problems.append(f"shard {sid}: audio totals {seconds:.3f}s, sidecar says {sidecar.audio_seconds}s")
        for kind in ("errors", "filtered"):
            lines = out.read_text(f"{kind}/{shard_name(sid)}.jsonl").splitlines()
            expected = sidecar.errors if kind == "errors" else sidecar.filtered
            if len(lines) != expected:
                problems.append(f"shard {sid}: {kind} file has {len(lines)} lines, sidecar says {expected}")
            for line in lines:
                rid = json.loads(line)["id"]
                if rid in seen:
                    problems.append(f"shard {sid}: duplicate id {rid} in {kind}")
                seen.add(rid)
    counts = [planned_docs(s) for s in plan]
    if not problems and None not in counts and docs != sum(counts):
        problems.append(f"documents read {docs} != planned {sum(counts)}")
    problems.extend(_unknown_files(out, plan))
    problems.extend(_check_manifest(out, sidecars))
    return problems
