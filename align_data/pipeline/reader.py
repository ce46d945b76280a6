"""Plan and read source documents from local or URL (fsspec) txt/jsonl/parquet files, or HF datasets, reading only
the bytes and row groups a shard needs (``pipeline/sources``). URL sources are reached with the config's
``storage.options`` and the environment's credentials; nothing is copied into a cache."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from align_data.config import SourceConfig
from align_data.errors import AlignDataError
from align_data.pipeline.sources import Piece, SourceSlice
from align_data.pipeline.sources.hub import hub_files, plan_stream, read_stream_piece
from align_data.pipeline.sources.parquet import plan_parquet, read_parquet_piece
from align_data.pipeline.sources.textfiles import plan_text, read_text_piece
from align_data.stages.source import Document
from align_data.storage import Options, expand_inputs, local_path

_BY_SUFFIX = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def source_format(source: SourceConfig) -> str:
    """The configured format, or the one implied by the file extension."""
    if source.format != "auto":
        return source.format
    suffix = Path(source.path.replace("*", "x")).suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    local = local_path(source.path)
    if local is not None and not os.path.exists(local) and not expand_inputs(source.path):
        return "hf"
    raise AlignDataError(f"source {source.name}: cannot tell the format of {source.path}; "
                         "set format = \"txt\" | \"jsonl\" | \"parquet\" | \"hf\"")


def files_of(source: SourceConfig, options: Options | None = None) -> tuple[str, list[str]]:
    """(the format its files are read as, the files): a hub dataset's own data files, or the matching paths."""
    fmt = source_format(source)
    if fmt == "hf":
        found, files = hub_files(source)
        return (found or "stream"), files
    files = expand_inputs(source.path, options)
    if not files:
        raise AlignDataError(f"source {source.name}: no file matches {source.path}")
    return fmt, files


def plan_source(source: SourceConfig, docs_per_shard: int, limit: int | None = None,
                options: Options | None = None) -> list[SourceSlice]:
    """The source cut into shard slices, from its metadata (file sizes, Parquet footers, the hub's file list); a
    small txt/jsonl source, or the first ``limit`` documents, are found by reading their boundaries."""
    fmt, files = files_of(source, options)
    try:
        if fmt == "stream":
            slices = plan_stream(source, limit)
        elif fmt == "parquet":
            slices = plan_parquet(source, files, docs_per_shard, limit, options)
        else:
            slices = plan_text(source, fmt, files, docs_per_shard, limit, options)
    except OSError as exc:
        raise AlignDataError(f"source {source.name}: cannot read {source.path}: {exc}") from exc
    return [dataclasses.replace(s, reader=fmt) for s in slices]


def read_pieces(source: SourceConfig, reader: str, pieces: tuple[Piece, ...], by_offset: bool,
                options: Options | None = None) -> list[Document]:
    """The documents of a shard's pieces, in order; ``reader`` is the format the plan read the files as."""
    docs: list[Document] = []
    for piece in pieces:
        if reader == "stream":
            docs.extend(read_stream_piece(source, piece))
        elif reader == "parquet":
            docs.extend(read_parquet_piece(source, piece, options))
        else:
            docs.extend(read_text_piece(source, reader, piece, by_offset, options))
    return docs


def count_documents(source: SourceConfig, options: Options | None = None) -> int:
    """Documents of a source, counted (a large txt/jsonl source is read whole to count them)."""
    fmt, files = files_of(source, options)
    if fmt in ("txt", "jsonl"):
        from align_data.pipeline.sources.textfiles import count_text

        return count_text(source, fmt, files, options)
    return sum(s.docs or 0 for s in plan_source(source, 1 << 30, None, options))
