"""Check a build folder end to end: files against sidecars, schema, audio, ids, and the counts invariant."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.pipeline.manifest import load_sidecar, verify_shard
from align_data.pipeline.writers import shard_name
from align_data.schemas.arrow import META_SCHEMA_VERSION, check_schema_version

DURATION_TOLERANCE_S = 0.01


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise AlignDataError(f"{path.parent} is not an align-data build: {path.name} is missing")
    return json.loads(path.read_text())


def _check_parquet(path: Path, shard_id: int, seen: set[str]) -> tuple[list[str], int, float]:
    """Problems in one Parquet shard, its row count and audio seconds."""
    import soundfile as sf

    problems: list[str] = []
    pf = pq.ParquetFile(path)
    meta = pf.schema_arrow.metadata or {}
    try:
        check_schema_version(meta.get(META_SCHEMA_VERSION), str(path))
    except AlignDataError as exc:
        return [str(exc)], 0, 0.0
    seconds = 0.0
    table = pf.read(columns=["id", "audio", "audio_meta", "paralinguistics"])
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
    return problems, table.num_rows, seconds


def validate_build(out_dir: str | Path) -> list[str]:
    """Every reason the build is not valid; an empty list means valid."""
    out = Path(out_dir)
    config = _read_json(out / "config.json")
    plan = _read_json(out / "plan.json")["shards"]
    config_hash = config["config_hash"]
    problems: list[str] = []
    seen: set[str] = set()
    docs = 0
    for spec in plan:
        sid = spec["shard_id"]
        shard_problems = verify_shard(out, sid, config_hash)
        problems.extend(shard_problems)
        if shard_problems:
            continue
        sidecar = load_sidecar(out, sid)
        if sidecar.input_docs != spec["stop"] - spec["start"]:
            problems.append(f"shard {sid}: read {sidecar.input_docs} documents, planned "
                            f"{spec['stop'] - spec['start']}")
        docs += sidecar.input_docs
        if sidecar.rows + sidecar.errors + sidecar.filtered != sidecar.candidates:
            problems.append(f"shard {sid}: rows {sidecar.rows} + errors {sidecar.errors} + filtered "
                            f"{sidecar.filtered} != input segments {sidecar.candidates}")
        pq_problems, n_rows, seconds = _check_parquet(out / f"shards/{shard_name(sid)}.parquet", sid, seen)
        problems.extend(pq_problems)
        if n_rows != sidecar.rows:
            problems.append(f"shard {sid}: Parquet has {n_rows} rows, sidecar says {sidecar.rows}")
        if abs(seconds - sidecar.audio_seconds) > DURATION_TOLERANCE_S * max(1, n_rows):
            problems.append(f"shard {sid}: audio totals {seconds:.3f}s, sidecar says {sidecar.audio_seconds}s")
        for kind in ("errors", "filtered"):
            lines = (out / f"{kind}/{shard_name(sid)}.jsonl").read_text().splitlines()
            expected = sidecar.errors if kind == "errors" else sidecar.filtered
            if len(lines) != expected:
                problems.append(f"shard {sid}: {kind} file has {len(lines)} lines, sidecar says {expected}")
            for line in lines:
                rid = json.loads(line)["id"]
                if rid in seen:
                    problems.append(f"shard {sid}: duplicate id {rid} in {kind}")
                seen.add(rid)
    planned_docs = sum(s["stop"] - s["start"] for s in plan)
    if not problems and docs != planned_docs:
        problems.append(f"documents read {docs} != planned {planned_docs}")
    manifest = out / "manifest.json"
    if not manifest.exists():
        problems.append("manifest.json is missing (the build did not finish)")
    return problems
