"""What a shard reads of a source: pieces of files (byte ranges, row-group rows, stream shards)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Piece:
    """One part of one file that a shard reads.

    txt/jsonl: the documents that start in bytes [start, stop). Parquet: rows [start, stop) of row group ``group``.
    A streamed hub dataset: documents [start, stop) of its stream shard ``group`` (stop -1: to the end).
    ``origin`` numbers the documents: the number of the piece's first document, or, for sources numbered by byte
    offset, the file's offset in the source (a document's number is then ``origin`` + its byte offset)."""

    path: str
    start: int
    stop: int
    origin: int = 0
    group: int = -1


@dataclass(frozen=True, slots=True)
class SourceSlice:
    """The documents of one planned shard: where they are, their numbers, and how many (None: known once read)."""

    pieces: tuple[Piece, ...]
    start: int  # first document number (or source byte offset when by_offset)
    stop: int
    docs: int | None
    by_offset: bool = False
    reader: str = ""  # how the pieces are read: txt, jsonl, parquet or stream
