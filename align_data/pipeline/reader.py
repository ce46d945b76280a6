"""Read source documents through HF ``datasets``: local or URL (fsspec) txt/jsonl/parquet files, or hub dataset
names. URL sources are reached with the config's ``storage.options`` and the environment's credentials."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator

from align_data.config import SourceConfig
from align_data.errors import AlignDataError
from align_data.stages.source import Document
from align_data.storage import Options, expand_inputs, input_size, local_path, open_input

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


class UnparsableSource(AlignDataError):
    """The source's files exist but ``datasets`` could not load them (or the hub dataset is unreachable)."""


def open_source(source: SourceConfig, options: Options | None = None) -> Any:
    """The source as an HF ``Dataset`` (memory-mapped Arrow; rows are not loaded into RAM); URL files are
    downloaded into the ``datasets`` cache first."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    fmt = source_format(source)
    if fmt != "hf":
        files = expand_inputs(source.path, options)
        if not files:
            raise AlignDataError(f"source {source.name}: no file matches {source.path}")
    # datasets keeps a downloaded data file under its URL alone (no ETag check): an object replaced at the same URL
    # would be read from the old copy forever. With the ETag in the key, a changed object is a new download.
    fetch = datasets.DownloadConfig(use_etag=True, storage_options=dict(options or {}))
    try:
        if fmt == "txt":  # bytes that are not UTF-8 become U+FFFD; the source stage filters those documents
            return datasets.load_dataset("text", data_files=files, sample_by=source.txt_unit, split="train",
                                         encoding_errors="replace", storage_options=options or None,
                                         download_config=fetch)
        if fmt == "jsonl":
            ds = datasets.load_dataset("json", data_files=files, split="train", storage_options=options or None,
                                       download_config=fetch)
        elif fmt == "parquet":
            ds = datasets.load_dataset("parquet", data_files=files, split="train", storage_options=options or None,
                                       download_config=fetch)
        else:
            ds = datasets.load_dataset(source.path, source.hf_config, split=source.split)
    except AlignDataError:
        raise
    except Exception as exc:  # datasets raises many types for unreachable hubs and bad files
        raise UnparsableSource(f"source {source.name}: could not open {source.path} as {fmt}: "
                               f"{type(exc).__name__}: {exc}") from exc
    if source.text_column not in ds.column_names:
        raise AlignDataError(f"source {source.name}: no column {source.text_column!r} in {source.path} "
                             f"(columns: {', '.join(ds.column_names)}); set text_column")
    if source.id_column and source.id_column not in ds.column_names:
        raise AlignDataError(f"source {source.name}: no id column {source.id_column!r} in {source.path}")
    return ds


# jsonl sources this process found unparsable as a whole: read line by line without asking datasets again
_LINE_BY_LINE: set[tuple[str, str]] = set()


def _open_whole(source: SourceConfig, options: Options | None) -> Any | None:
    """The source as a Dataset, or None for a jsonl file that exists but does not parse as a whole (its lines
    are then read one by one, so one bad line costs one error record, not the source)."""
    key = (source.name, source.path)
    if key in _LINE_BY_LINE:
        return None
    try:
        return open_source(source, options)
    except UnparsableSource:
        if source_format(source) != "jsonl":
            raise
        _LINE_BY_LINE.add(key)
        return None


def _jsonl_lines(source: SourceConfig, options: Options | None) -> Iterator[str]:
    """The non-blank lines of every file of a jsonl source, in order."""
    for path in expand_inputs(source.path, options):
        with open_input(path, options) as handle:
            yield from (line for line in handle if line.strip())


def _jsonl_document(source: SourceConfig, row: int, line: str) -> Document:
    """One jsonl line as a document, or as a document with the problem that stops it being one."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return Document(source.name, row, str(row), "", problem=f"line {row + 1} is not JSON ({exc})")
    if not isinstance(obj, dict) or not isinstance(obj.get(source.text_column), str):
        return Document(source.name, row, str(row), "",
                        problem=f"line {row + 1} has no string field {source.text_column!r}")
    doc_id = obj.get(source.id_column) if source.id_column else None
    return Document(source.name, row, str(row if doc_id is None else doc_id), obj[source.text_column])


def count_documents(source: SourceConfig, options: Options | None = None) -> int:
    files = expand_inputs(source.path, options) if source_format(source) in ("txt", "jsonl") else []
    if files and all(input_size(f, options) == 0 for f in files):
        return 0  # empty text files hold no documents (datasets refuses to load them)
    ds = _open_whole(source, options)
    return len(ds) if ds is not None else sum(1 for _ in _jsonl_lines(source, options))


def read_documents(source: SourceConfig, start: int, stop: int, options: Options | None = None) -> list[Document]:
    """Documents [start, stop) of a source, with their row numbers and ids."""
    ds = _open_whole(source, options)
    if ds is None:
        lines = itertools.islice(_jsonl_lines(source, options), start, stop)
        return [_jsonl_document(source, start + i, line) for i, line in enumerate(lines)]
    ds = ds.select(range(start, stop))
    texts = ds[source.text_column]
    ids = ds[source.id_column] if source.id_column else [str(start + i) for i in range(len(texts))]
    return [Document(dataset=source.name, row=start + i, doc_id=str(doc_id),
                     text=text if isinstance(text, str) else "")
            for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True))]
