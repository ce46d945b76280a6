"""HF datasets (a hub name, or a local dataset folder) planned by the dataset's own file list.

Parquet, json(l) and txt data files are planned and read like local ones, through fsspec (``hf://`` URLs reach the
hub with range requests): no download of the whole dataset, no Arrow cache. A dataset of other files (csv, arrow,
...) is read with ``streaming=True``, one shard per stream shard (file) of the split."""

from __future__ import annotations

from itertools import islice
from typing import Any

from align_data.config import SourceConfig
from align_data.errors import AlignDataError
from align_data.pipeline.sources.slices import Piece, SourceSlice
from align_data.stages.source import Document

# streamed datasets: the documents of stream shard i are numbered from i * STREAM_STRIDE (their count is not known)
STREAM_STRIDE = 10**9
_BY_SUFFIX = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt", ".text": "txt"}


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def hub_files(source: SourceConfig) -> tuple[str | None, list[str]]:
    """(format of the files, or None when they must be streamed; the split's data files, sorted)."""
    datasets = _quiet_datasets()
    try:
        builder = datasets.load_dataset_builder(source.path, source.hf_config)
    except Exception as exc:  # datasets raises many types for unreachable hubs and unknown names
        raise AlignDataError(f"source {source.name}: could not open the dataset {source.path}: "
                             f"{type(exc).__name__}: {exc}") from exc
    data_files = builder.config.data_files or {}
    if source.split not in data_files:
        if data_files:
            raise AlignDataError(f"source {source.name}: {source.path} has no split {source.split!r} "
                                 f"(splits: {', '.join(data_files)}); set split")
        return None, []
    files = sorted(str(f) for f in data_files[source.split])
    formats = {_BY_SUFFIX.get("." + f.rsplit(".", 1)[-1].lower()) for f in files}
    return (formats.pop() if len(formats) == 1 and None not in formats else None), files


def _stream(source: SourceConfig) -> Any:
    datasets = _quiet_datasets()
    try:
        return datasets.load_dataset(source.path, source.hf_config, split=source.split, streaming=True)
    except Exception as exc:
        raise AlignDataError(f"source {source.name}: could not stream {source.path}: "
                             f"{type(exc).__name__}: {exc}") from exc


def plan_stream(source: SourceConfig, limit: int | None) -> list[SourceSlice]:
    """One shard per stream shard; with a limit, the first ``limit`` documents of the first stream shard."""
    shards = _stream(source).num_shards
    if limit is not None:
        return [SourceSlice((Piece(source.path, 0, limit, 0, 0),), 0, STREAM_STRIDE, None, True)] if limit else []
    return [SourceSlice((Piece(source.path, 0, -1, i * STREAM_STRIDE, i),), i * STREAM_STRIDE,
                        (i + 1) * STREAM_STRIDE, None, True) for i in range(shards)]


def read_stream_piece(source: SourceConfig, piece: Piece) -> list[Document]:
    ds = _stream(source)
    part = ds.shard(num_shards=ds.num_shards, index=piece.group)
    rows = islice(part, piece.start, None if piece.stop < 0 else piece.stop)
    docs = []
    for i, row in enumerate(rows):
        number = piece.origin + piece.start + i
        text = row.get(source.text_column)
        if source.text_column not in row:
            docs.append(Document(source.name, number, str(number), "",
                                 problem=f"row {i} of stream shard {piece.group} has no column {source.text_column!r}"))
            continue
        doc_id = row.get(source.id_column) if source.id_column else None
        docs.append(Document(source.name, number, str(number if doc_id is None else doc_id),
                             text if isinstance(text, str) else ""))
    return docs
