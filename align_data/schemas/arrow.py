"""The record as a pyarrow schema, with conversions both ways and HF ``datasets`` features."""

from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa

from align_data.errors import AlignDataError
from align_data.schemas.record import (
    SCHEMA_VERSION,
    Acoustics,
    AudioClip,
    ClipQuality,
    Paralinguistics,
    Provenance,
    Quality,
    Record,
    Segment,
    SourceRef,
    Target,
    Voice,
)

META_SCHEMA_VERSION = b"align_data.schema_version"
META_CONFIG_HASH = b"align_data.config_hash"

_SOURCE = pa.struct([("dataset", pa.string()), ("doc_id", pa.string()), ("segment_index", pa.int32())])
_SEGMENT = pa.struct([
    ("modality", pa.string()), ("text", pa.string()), ("char_start", pa.int32()),
    ("char_end", pa.int32()), ("audio_index", pa.int32()),
])
# {bytes, path} is the storage HF ``datasets`` reads as an ``Audio`` feature.
_AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_AUDIO_META = pa.struct([("sample_rate", pa.int32()), ("num_samples", pa.int64())])
_VOICE = pa.struct([
    ("backend", pa.string()), ("voice_id", pa.string()), ("gender", pa.string()),
    ("accent", pa.string()), ("language", pa.string()), ("rate", pa.float64()),
    ("pitch", pa.float64()), ("volume", pa.float64()), ("emotion", pa.string()),
    ("mix", pa.list_(pa.struct([("voice", pa.string()), ("weight", pa.float64())]))),  # since 1.4
])
_PARA = pa.struct([
    ("duration_s", pa.float64()), ("speech_rate_wps", pa.float64()), ("f0_mean_hz", pa.float64()),
    ("f0_std_hz", pa.float64()), ("pitch_level", pa.string()), ("rms_dbfs", pa.float64()),
    ("volume_level", pa.string()), ("speed_level", pa.string()), ("snr_db", pa.float64()),
    ("c50_db", pa.float64()),
])
_ACOUSTICS = pa.struct([
    ("gain_db", pa.float64()), ("trimmed_start_s", pa.float64()), ("trimmed_end_s", pa.float64()),
    ("peak", pa.float64()), ("noise_type", pa.string()), ("target_snr_db", pa.float64()),
    ("snr_db", pa.float64()), ("rt60_s", pa.float64()), ("c50_db", pa.float64()),
])
_TARGET = pa.struct([
    ("task", pa.string()), ("prompt_id", pa.string()), ("prompt", pa.string()),
    ("response", pa.string()), ("model", pa.string()), ("backend", pa.string()),
    ("finish_reason", pa.string()),
])
_CLIP_QUALITY = pa.struct([
    ("audio_index", pa.int32()), ("asr_text", pa.string()), ("wer", pa.float64()),
    ("errors", pa.int32()), ("ref_words", pa.int32()),
])
_QUALITY = pa.struct([("asr_model", pa.string()), ("wer", pa.float64()), ("clips", pa.list_(_CLIP_QUALITY))])

_PROVENANCE = pa.struct([
    ("license", pa.string()), ("tts_engine", pa.string()), ("tts_seed", pa.int64()), ("tts_attempt", pa.int32()),
    ("llm_seed", pa.int64()), ("llm_attempt", pa.int32()), ("llm_temperature", pa.float64()),
    ("llm_top_p", pa.float64()), ("llm_max_new_tokens", pa.int32()), ("shots", pa.string()),
    ("repaired", pa.list_(pa.string())),
])

RECORD_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("shard_id", pa.int32()),
    ("source", _SOURCE),
    ("text", pa.string()),
    ("next_text", pa.string()),
    ("task", pa.string()),
    ("segments", pa.list_(_SEGMENT)),
    ("audio", pa.list_(_AUDIO)),
    ("audio_meta", pa.list_(_AUDIO_META)),
    ("voice", _VOICE),
    ("acoustics", _ACOUSTICS),
    ("paralinguistics", _PARA),
    ("description", pa.string()),
    ("targets", pa.list_(_TARGET)),
    ("split", pa.string()),
    ("quality", _QUALITY),  # since 1.2; null when the quality stage did not run (absent from 1.1 files)
    ("provenance", _PROVENANCE),  # since 1.3 (absent from older files: read as an empty Provenance)
])


def hf_features() -> Any:
    """HF ``datasets`` features for RECORD_SCHEMA, with ``audio`` as a list of undecoded ``Audio``."""
    from datasets import Audio, Features, List

    features = Features.from_arrow_schema(RECORD_SCHEMA)
    features["audio"] = List(Audio(sampling_rate=16000, decode=False))
    return features


def schema_with_metadata(config_hash: str) -> pa.Schema:
    """RECORD_SCHEMA carrying the schema version, config hash and HF features in its metadata."""
    hf = json.dumps({"info": {"features": hf_features().to_dict()}}, sort_keys=True)
    return RECORD_SCHEMA.with_metadata({
        META_SCHEMA_VERSION: SCHEMA_VERSION.encode(),
        META_CONFIG_HASH: config_hash.encode(),
        b"huggingface": hf.encode(),
    })


def check_schema_version(version: str | bytes | None, where: str) -> None:
    """Refuse data written with an unknown major schema version."""
    if isinstance(version, bytes):
        version = version.decode()
    if not version:
        raise AlignDataError(f"{where}: no align-data schema version in its metadata")
    major = version.split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise AlignDataError(
            f"{where}: schema version {version} is not readable by this align-data "
            f"(reads {SCHEMA_VERSION.split('.')[0]}.x); use a matching align-data release"
        )


def record_to_row(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "shard_id": record.shard_id,
        "source": {"dataset": record.source.dataset, "doc_id": record.source.doc_id,
                   "segment_index": record.source.segment_index},
        "text": record.text,
        "next_text": record.next_text,
        "task": record.task,
        "segments": [
            {"modality": s.modality, "text": s.text, "char_start": s.char_start,
             "char_end": s.char_end, "audio_index": s.audio_index}
            for s in record.segments
        ],
        "audio": [{"bytes": a.flac, "path": f"{record.id}_{i}.flac"} for i, a in enumerate(record.audio)],
        "audio_meta": [{"sample_rate": a.sample_rate, "num_samples": a.num_samples} for a in record.audio],
        "voice": None if record.voice is None else {
            f: getattr(record.voice, f) for f in Voice.__slots__ if f != "mix"
        } | {"mix": [{"voice": name, "weight": weight} for name, weight in record.voice.mix]},
        "acoustics": None if record.acoustics is None else {
            f: getattr(record.acoustics, f) for f in Acoustics.__slots__
        },
        "paralinguistics": None if record.paralinguistics is None else {
            f: getattr(record.paralinguistics, f) for f in Paralinguistics.__slots__
        },
        "description": record.description,
        "targets": [{f: getattr(t, f) for f in Target.__slots__} for t in record.targets],
        "split": record.split,
        "quality": None if record.quality is None else {
            "asr_model": record.quality.asr_model, "wer": record.quality.wer,
            "clips": [{f: getattr(c, f) for f in ClipQuality.__slots__} for c in record.quality.clips],
        },
        "provenance": {f: (list(v) if isinstance(v := getattr(record.provenance, f), tuple) else v)
                       for f in Provenance.__slots__},
    }


def records_to_table(records: Iterable[Record], config_hash: str) -> pa.Table:
    """Rows of a shard as a table with the explicit schema (never inferred)."""
    rows = [record_to_row(r) for r in records]
    return pa.Table.from_pylist(rows, schema=schema_with_metadata(config_hash))


def record_from_row(row: dict[str, Any]) -> Record:
    """Rebuild a Record from a Parquet row dict (as ``Table.to_pylist`` gives it)."""
    audio = tuple(
        AudioClip(flac=a["bytes"], sample_rate=m["sample_rate"], num_samples=m["num_samples"])
        for a, m in zip(row["audio"], row["audio_meta"], strict=True)
    )
    return Record(
        id=row["id"],
        shard_id=row["shard_id"],
        source=SourceRef(**row["source"]),
        text=row["text"],
        next_text=row.get("next_text"),
        task=row["task"],
        segments=tuple(Segment(**s) for s in row["segments"]),
        audio=audio,
        voice=_voice_from_row(row["voice"]),
        acoustics=None if row.get("acoustics") is None else Acoustics(**row["acoustics"]),
        paralinguistics=None if row["paralinguistics"] is None else Paralinguistics(**row["paralinguistics"]),
        description=row["description"],
        targets=tuple(Target(**t) for t in row["targets"]),
        split=row["split"],
        quality=_quality_from_row(row.get("quality")),
        provenance=_provenance_from_row(row.get("provenance")),
    )


def _voice_from_row(value: dict[str, Any] | None) -> Voice | None:
    if value is None:
        return None
    mix = tuple((m["voice"], m["weight"]) for m in value.get("mix") or ())  # absent before 1.4
    return Voice(**{**{k: v for k, v in value.items() if k != "mix"}, "mix": mix})


def _provenance_from_row(value: dict[str, Any] | None) -> Provenance:
    if value is None:
        return Provenance()
    known = {k: v for k, v in value.items() if k in Provenance.__slots__}
    return Provenance(**{**known, "repaired": tuple(known.get("repaired") or ())})


def _quality_from_row(value: dict[str, Any] | None) -> Quality | None:
    if value is None:
        return None
    return Quality(asr_model=value["asr_model"], wer=value["wer"],
                   clips=tuple(ClipQuality(**c) for c in value["clips"] or ()))
