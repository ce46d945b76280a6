"""txt and jsonl sources by byte range: document boundaries found in the bytes, never a document split.

The documents are those HF ``datasets`` made of the same files (its ``text`` and ``json`` loaders): the file is read
as UTF-8 with undecodable bytes replaced, with universal newlines (``\\r\\n``, ``\\r`` and ``\\n`` each end a line).
A txt ``line`` is a document (a blank line too: it is filtered as empty); a txt ``paragraph`` ends at a blank line
(the text is cut at each ``\\n\\n`` from the left, empty pieces dropped); a jsonl document is a non-blank line.

A boundary is found from the bytes around a cut alone: back up over newline bytes to a byte that is not one, then
read forward to the first separator. So a plan may cut a big file anywhere (by size, no data read) and each range
owns the documents that *start* in it; a worker reads its range plus the end of its last document.
"""

from __future__ import annotations

import io
import json
import re
from typing import IO, Iterator

from align_data.config import SourceConfig
from align_data.pipeline.sources.slices import Piece, SourceSlice
from align_data.stages.source import Document
from align_data.storage import Options, input_size, open_binary

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_RUN = re.compile(rb"[\r\n]+")
CHUNK = 1 << 20  # the largest read while scanning for boundaries
FIRST_READ = 4096
# A source whose files total at most this is scanned whole when planned: its documents are counted and numbered 0,
# 1, 2, ... (as they always were). A larger one is cut by size without reading it; its documents are numbered by
# their byte offset in the source (the files one after another), which a worker knows without counting.
SCAN_BYTES = 64 << 20
SAMPLE_BYTES = 1 << 20  # the head of a large source read to learn its bytes per document (the shard size)


def _separators(buf: bytes, unit: str, final: bool, base: int = 0) -> Iterator[tuple[int, int]]:
    """(end of a document, start of the next) of each separator in ``buf``, which must not begin inside a run of
    newline bytes; ``final=False`` stops before a run that may go on in the next bytes."""
    for run in _RUN.finditer(buf):
        if not final and run.end() == len(buf):
            return
        tokens = _NEWLINE.findall(run.group())
        if unit == "paragraph":
            pairs = 2 * (len(tokens) // 2)
            if pairs:
                yield base + run.start(), base + run.start() + sum(len(t) for t in tokens[:pairs])
            continue
        at = run.start()
        for token in tokens:
            yield base + at, base + at + len(token)
            at += len(token)


def _iter_separators(handle: IO[bytes], pos: int, size: int, unit: str) -> Iterator[tuple[int, int]]:
    """Separators from ``pos`` (a point with no newline byte just before it) to the end of the file."""
    handle.seek(pos)
    buf, base = b"", pos
    step = min(CHUNK, FIRST_READ)  # a boundary is usually near: read a little first, more while none is found
    while True:
        more = handle.read(step)
        step = min(CHUNK, step * 2)
        buf += more
        final = not more or base + len(buf) >= size
        for separator in _separators(buf, unit, final, base):
            yield separator
        if final:
            return
        # runs before the buffer's end are done; a run the chunk cut is scanned again whole with the next chunk
        cut = len(buf.rstrip(b"\r\n"))
        base += cut
        buf = buf[cut:]


def _is_document(handle: IO[bytes], start: int, end: int, unit: str, last: bool) -> bool:
    """A span between separators is a document, except an empty one where the format drops it (an empty span at
    the end of a file or range is the start of the next document, never a document of its own) and a blank
    jsonl line."""
    if unit == "jsonl":
        if end <= start:
            return False
        here = handle.tell()
        handle.seek(start)
        blank = not handle.read(end - start).decode("utf-8", "replace").strip()
        handle.seek(here)
        return not blank
    return end > start or (unit == "line" and not last)


def iter_documents(handle: IO[bytes], size: int, unit: str, pos: int = 0) -> Iterator[tuple[int, int, int]]:
    """(start, end, start of the next) of each document from ``pos``, a document start, to the end of the file."""
    start = pos
    for end, following in _iter_separators(handle, pos, size, unit):
        if _is_document(handle, start, end, unit, last=False):
            yield start, end, following
        start = following
    if _is_document(handle, start, size, unit, last=True):
        yield start, size, size


def next_start(handle: IO[bytes], at: int, size: int, unit: str) -> int:
    """The first document boundary at or after byte ``at`` (``size`` when there is none)."""
    if at <= 0:
        return 0
    if at >= size:
        return size
    back = at  # back up over newline bytes: the separator scan starts where no run is cut
    while back > 0:
        low = max(0, back - 4096)
        handle.seek(low)
        stripped = handle.read(back - low).rstrip(b"\r\n")
        back = low + len(stripped)
        if stripped:
            break
    if back == 0 and at == 0:
        return 0
    for _, following in _iter_separators(handle, back, size, unit):
        if following >= at:
            return following
    return size


def unit_of(source: SourceConfig, fmt: str) -> str:
    return "jsonl" if fmt == "jsonl" else source.txt_unit


def plan_text(source: SourceConfig, fmt: str, files: list[str], docs_per_shard: int, limit: int | None,
              options: Options | None) -> list[SourceSlice]:
    """The shards of a txt/jsonl source: counted every ``docs_per_shard`` documents when it is small or a limit
    is given (reading only up to the limit's last document), else cut by size from the file sizes alone."""
    unit = unit_of(source, fmt)
    sizes = [input_size(f, options) for f in files]
    if not any(sizes):
        return []
    if unit == "document":  # one document per file: the file list is the plan
        take = len(files) if limit is None else min(limit, len(files))
        return [SourceSlice(tuple(Piece(files[i], 0, sizes[i], i) for i in range(lo, min(lo + docs_per_shard, take))),
                            lo, min(lo + docs_per_shard, take), min(lo + docs_per_shard, take) - lo)
                for lo in range(0, take, docs_per_shard)]
    by_offset = sum(sizes) > SCAN_BYTES
    if limit is None and by_offset:
        return _cut_by_size(files, sizes, unit, docs_per_shard, options)
    return _cut_by_count(files, sizes, unit, docs_per_shard, limit, by_offset, options)


def _cut_by_count(files: list[str], sizes: list[int], unit: str, docs_per_shard: int, limit: int | None,
                  by_offset: bool, options: Options | None) -> list[SourceSlice]:
    """Read document boundaries from the start; a shard every ``docs_per_shard`` documents (across files)."""
    slices: list[SourceSlice] = []
    pieces: list[Piece] = []
    count = first = 0
    offset = 0  # the current file's byte offset in the source

    def close(last_stop_number: int) -> None:
        nonlocal pieces, first
        if pieces:
            n = count - first
            start = pieces[0].origin + pieces[0].start if by_offset else first
            slices.append(SourceSlice(tuple(pieces), start, last_stop_number if by_offset else count, n, by_offset))
        pieces, first = [], count

    for path, size in zip(files, sizes, strict=True):
        if limit is not None and count >= limit:
            break
        with open_binary(path, options) as handle:
            piece_start = None
            for start, _end, following in iter_documents(handle, size, unit):
                if piece_start is None:
                    piece_start, piece_origin = start, (offset if by_offset else count)
                count += 1
                if count - first == docs_per_shard or count == limit:
                    pieces.append(Piece(path, piece_start, following, piece_origin))
                    piece_start = None
                    close(offset + following)
                    if count == limit:
                        break
            if piece_start is not None:
                pieces.append(Piece(path, piece_start, size, piece_origin))
        offset += size
    close(offset)
    return slices


def _bytes_per_shard(path: str, size: int, unit: str, docs_per_shard: int, options: Options | None) -> int:
    """Shard size in bytes for ``docs_per_shard`` documents, from the documents of the first file's first MiB."""
    with open_binary(path, options) as handle:
        sample = io.BytesIO(handle.read(min(size, SAMPLE_BYTES)))
    ends = [following for _, _, following in iter_documents(sample, len(sample.getvalue()), unit)]
    if len(ends) > 1:
        ends = ends[:-1]  # the last may be cut by the sample's end
    per_doc = ends[-1] / len(ends) if ends and ends[-1] else SAMPLE_BYTES
    return max(1, round(per_doc * docs_per_shard))


def _cut_by_size(files: list[str], sizes: list[int], unit: str, docs_per_shard: int,
                 options: Options | None) -> list[SourceSlice]:
    """Cut every file into ranges of the shard size (no data read beyond the first MiB)."""
    first = next(i for i, s in enumerate(sizes) if s)
    step = _bytes_per_shard(files[first], sizes[first], unit, docs_per_shard, options)
    slices, offset = [], 0
    for path, size in zip(files, sizes, strict=True):
        for lo in range(0, size, step):
            hi = min(lo + step, size)
            slices.append(SourceSlice((Piece(path, lo, hi, offset),), offset + lo, offset + hi, None, True))
        offset += size
    return slices


def count_text(source: SourceConfig, fmt: str, files: list[str], options: Options | None) -> int:
    """Every document of a txt/jsonl source, counted by reading all its boundaries."""
    unit = unit_of(source, fmt)
    sizes = [input_size(f, options) for f in files]
    if unit == "document":
        return len(files) if any(sizes) else 0
    total = 0
    for path, size in zip(files, sizes, strict=True):
        with open_binary(path, options) as handle:
            total += sum(1 for _ in iter_documents(handle, size, unit))
    return total


def _text_of(data: bytes) -> str:
    """Decoded as the ``datasets`` text loader does: UTF-8, bad bytes replaced, universal newlines."""
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


def read_text_piece(source: SourceConfig, fmt: str, piece: Piece, by_offset: bool,
                    options: Options | None) -> list[Document]:
    """The documents that start in ``piece``, numbered from its origin (or by byte offset)."""
    unit = unit_of(source, fmt)
    size = input_size(piece.path, options)
    with open_binary(piece.path, options) as handle:
        if unit == "document":
            handle.seek(0)
            return [Document(source.name, piece.origin, str(piece.origin), _text_of(handle.read()))]
        begin = next_start(handle, piece.start, size, unit)
        end = next_start(handle, piece.stop, size, unit) if piece.stop < size else size
        handle.seek(begin)
        data = handle.read(max(0, end - begin))
    docs = []
    for start, stop, _ in iter_documents(io.BytesIO(data), len(data), unit):
        row = piece.origin + begin + start if by_offset else piece.origin + len(docs)
        text = _text_of(data[start:stop])
        docs.append(_jsonl_document(source, row, text, by_offset, piece.path, begin + start) if unit == "jsonl"
                    else Document(source.name, row, str(row), text))
    return docs


def _jsonl_document(source: SourceConfig, row: int, line: str, by_offset: bool, path: str, at: int) -> Document:
    """One jsonl line as a document, or as a document with the problem that stops it being one."""
    where = f"the line at byte {at} of {path}" if by_offset else f"line {row + 1}"
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return Document(source.name, row, str(row), "", problem=f"{where} is not JSON ({exc})")
    if not isinstance(obj, dict) or not isinstance(obj.get(source.text_column), str):
        return Document(source.name, row, str(row), "", problem=f"{where} has no string field {source.text_column!r}")
    doc_id = obj.get(source.id_column) if source.id_column else None
    return Document(source.name, row, str(row if doc_id is None else doc_id), obj[source.text_column])
