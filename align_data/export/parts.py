"""Per-shard jsonl parts for the line-based exports (NeMo, BLSP): written under ``progress/parts/<name>/``
while shards are exported, then joined in shard order into ``OUT/<name>.jsonl`` at the end."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import IO

from align_data.export.base import ExportOptions
from align_data.export.files import AudioTree, atomic_file, concat_files, discard
from align_data.export.source import SourceCorpus

PARTS = "progress/parts"


class JsonlPartsShard:
    """One source shard → FLAC files in the audio tree and one jsonl part per output name."""

    def __init__(self, out: Path, shard_id: int, options: ExportOptions, corpus: SourceCorpus) -> None:
        self.out, self.shard_id, self.options = out, shard_id, options
        self.audio = AudioTree(out, shard_id, options.absolute_paths)
        self.stack = ExitStack()
        self.parts: dict[str, IO[bytes]] = {}

    def _part(self, name: str) -> IO[bytes]:
        if name not in self.parts:
            rel = f"{PARTS}/{name}/{self.shard_id:05d}.jsonl"
            self.parts[name] = self.stack.enter_context(atomic_file(self.out / rel))
        return self.parts[name]

    def close(self) -> list[str]:
        self.stack.close()
        return self.audio.written + [f"{PARTS}/{name}/{self.shard_id:05d}.jsonl" for name in self.parts]

    def abort(self) -> None:
        discard(self.stack)

    def info(self) -> dict:
        return {}


def merge_parts(out: Path, markers: list[dict], suffix: str = ".jsonl") -> list[str]:
    """Concatenate each manifest's per-shard parts, in shard order, into ``OUT/<name><suffix>``."""
    names: dict[str, list[str]] = {}
    for marker in markers:
        for rel in marker["files"]:
            if rel.startswith(f"{PARTS}/"):
                names.setdefault(rel[len(PARTS) + 1:].rsplit("/", 1)[0], []).append(rel)
    written = []
    for name, parts in sorted(names.items()):
        dest = f"{name}{suffix}"
        concat_files(out, parts, out / dest)
        written.append(dest)
    return written
