"""Parquet sources by row group: planned from the files' footers (no data read), a shard reads the row groups that
hold its rows, and only the text (and id) columns of them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from align_data.config import SourceConfig
from align_data.errors import AlignDataError
from align_data.pipeline.sources.slices import Piece, SourceSlice
from align_data.stages.source import Document
from align_data.storage import Options, open_binary

FOOTER_THREADS = 16  # footers are read at once: on an object store each is a request or two


@dataclass(frozen=True, slots=True)
class _Footer:
    path: str
    groups: tuple[int, ...]  # rows per row group


def _footer(source: SourceConfig, path: str, options: Options | None) -> _Footer:
    import pyarrow.parquet as pq

    try:
        with open_binary(path, options) as handle:
            meta = pq.ParquetFile(handle).metadata
            names = meta.schema.to_arrow_schema().names
    except (OSError, ValueError) as exc:  # pyarrow: not Parquet, truncated
        raise AlignDataError(f"source {source.name}: {path} is not a readable Parquet file ({exc})") from exc
    for column, what in ((source.text_column, "text_column"), (source.id_column, "id_column")):
        if column and column not in names:
            raise AlignDataError(f"source {source.name}: no column {column!r} in {path} "
                                 f"(columns: {', '.join(names)}); set {what}")
    return _Footer(path, tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups)))


def _footers(source: SourceConfig, files: list[str], limit: int | None, options: Options | None) -> list[_Footer]:
    """The footers of the files that the plan needs (with a limit, only until it has enough rows)."""
    if limit is None:
        with ThreadPoolExecutor(min(FOOTER_THREADS, max(1, len(files)))) as pool:
            return list(pool.map(lambda f: _footer(source, f, options), files))
    found, rows = [], 0
    for path in files:
        if rows >= limit:
            break
        found.append(_footer(source, path, options))
        rows += sum(found[-1].groups)
    return found


def plan_parquet(source: SourceConfig, files: list[str], docs_per_shard: int, limit: int | None,
                 options: Options | None) -> list[SourceSlice]:
    """Rows numbered across the files in order (as ``datasets`` does), a shard every ``docs_per_shard`` rows."""
    total = 0
    pieces: list[Piece] = []
    slices: list[SourceSlice] = []
    for footer in _footers(source, files, limit, options):
        for group, rows in enumerate(footer.groups):
            at = 0
            while at < rows and (limit is None or total < limit):
                room = docs_per_shard - (total % docs_per_shard)
                if limit is not None:
                    room = min(room, limit - total)
                take = min(room, rows - at)
                pieces.append(Piece(footer.path, at, at + take, total, group))
                at += take
                total += take
                if total % docs_per_shard == 0 or total == limit:
                    slices.append(_slice(pieces))
                    pieces = []
    if pieces:
        slices.append(_slice(pieces))
    return slices


def _slice(pieces: list[Piece]) -> SourceSlice:
    start = pieces[0].origin
    stop = pieces[-1].origin + pieces[-1].stop - pieces[-1].start
    return SourceSlice(tuple(pieces), start, stop, stop - start)


_LAST_GROUP: dict[tuple, object] = {}  # the row group read last, kept: consecutive shards often share one


def _row_group(path: str, group: int, columns: tuple[str, ...], options: Options | None):
    import pyarrow.parquet as pq

    key = (path, group, columns)
    if key not in _LAST_GROUP:
        _LAST_GROUP.clear()
        with open_binary(path, options) as handle:
            _LAST_GROUP[key] = pq.ParquetFile(handle).read_row_group(group, columns=list(columns))
    return _LAST_GROUP[key]


def read_parquet_piece(source: SourceConfig, piece: Piece, options: Options | None) -> list[Document]:
    columns = (source.text_column,) + ((source.id_column,) if source.id_column else ())
    table = _row_group(piece.path, piece.group, columns, options).slice(piece.start, piece.stop - piece.start)
    texts = table.column(source.text_column).to_pylist()
    ids = (table.column(source.id_column).to_pylist() if source.id_column
           else [piece.origin + i for i in range(len(texts))])
    return [Document(source.name, piece.origin + i, str(doc_id), text if isinstance(text, str) else "")
            for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True))]
