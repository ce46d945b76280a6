"""A Hugging Face ``datasets`` folder: ``data/<task>/<split>-NNNNN.parquet`` + a README.md dataset card.

``datasets.load_dataset(OUT)`` reads the card's ``configs``: the default config has every exported task, one
more config per task, and the splits are the ones the rows carry (``train``, ``heldout``, ...). The rows are
the build's rows; ``audio`` is a list of ``Audio(sampling_rate=16000)`` (FLAC bytes embedded in the Parquet,
as HF stores audio), one per clip. Row groups are small so ``streaming=True`` reads stay light.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from align_data.errors import AlignDataError
from align_data.export.base import ExportFormat, ExportOptions, Tally, speech_clips
from align_data.export.files import atomic_file
from align_data.export.source import SourceCorpus
from align_data.schemas import Record
from align_data.schemas.arrow import RECORD_SCHEMA, record_to_row

ROWS_PER_GROUP = 32
_SPLIT_NAME = re.compile(r"^\w+$")


def hf_schema(config_hash: str) -> pa.Schema:
    """RECORD_SCHEMA with HF features in its metadata: ``audio`` as a list of decodable ``Audio``."""
    import json

    from datasets import Audio, List

    from align_data.schemas import SCHEMA_VERSION, hf_features
    from align_data.schemas.arrow import META_CONFIG_HASH, META_SCHEMA_VERSION

    features = hf_features()
    features["audio"] = List(Audio(sampling_rate=16000))
    meta = json.dumps({"info": {"features": features.to_dict()}}, sort_keys=True)
    return RECORD_SCHEMA.with_metadata({
        META_SCHEMA_VERSION: SCHEMA_VERSION.encode(),
        META_CONFIG_HASH: config_hash.encode(),
        b"huggingface": meta.encode(),
    })


def data_file(task: str, split: str, shard_id: int) -> str:
    return f"data/{task}/{split}-{shard_id:05d}.parquet"


class _Part:
    """One open Parquet file of a shard, written ROWS_PER_GROUP rows at a time."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.context = atomic_file(path)
        handle = self.context.__enter__()
        self.writer = pq.ParquetWriter(handle, schema, compression="zstd")
        self.schema = schema
        self.rows: list[dict] = []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= ROWS_PER_GROUP:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.context.__exit__(None, None, None)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.context.__exit__(RuntimeError, RuntimeError("export of this shard was aborted"), None)


class HfShard:
    """One source shard → one Parquet file per (task, split) that has rows."""

    def __init__(self, out: Path, shard_id: int, options: ExportOptions, corpus: SourceCorpus) -> None:
        self.out, self.shard_id = out, shard_id
        self.config_hash = corpus.config_hash
        self.schema: pa.Schema | None = None
        self.parts: dict[str, _Part] = {}

    def add(self, record: Record, tally: Tally) -> None:
        if not _SPLIT_NAME.match(record.split):
            raise AlignDataError(f"{record.id}: split {record.split!r} is not a valid HF split name "
                                 "(letters, digits, underscore)")
        speech_clips(record)  # refuses a row whose speech segments and clips disagree, as every format does
        rel = data_file(record.task, record.split, self.shard_id)
        if rel not in self.parts:
            if self.schema is None:
                self.schema = hf_schema(self.config_hash)
            self.parts[rel] = _Part(self.out / rel, self.schema)
        self.parts[rel].add(record_to_row(record))
        tally.exported(record, items=1)

    def close(self) -> list[str]:
        for part in self.parts.values():
            part.close()
        return sorted(self.parts)

    def abort(self) -> None:
        for part in self.parts.values():
            part.abort()

    def info(self) -> dict:
        return {}


def finalize(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict]) -> list[str]:
    """The dataset card, whose YAML ``configs`` tell ``load_dataset`` which files make which split."""
    from align_data.export.hf_card import write_card

    files = sorted(rel for marker in markers for rel in marker["files"])
    write_card(out, corpus, options, markers, files)
    return ["README.md"]


HF = ExportFormat(
    name="hf",
    summary="Hugging Face datasets folder: Parquet per task and split with an Audio feature + dataset card",
    open_shard=HfShard,
    finalize=finalize,
)
