"""BLSP's stage-2 jsonl: one ``{"audio": path, "text": target}`` per line, one file per instruction.

BLSP (github.com/cwang621/blsp) reads these lines in ``blsp/src/speech_text_paired_dataset.py``: ``audio`` is
opened with soundfile, ``text`` is the response the model learns, and the instruction is one command-line
argument for all files of a run (``--instruction``). So each (split, prompt) gets its own file
``{split}/{prompt_id}.jsonl`` and ``instructions.json`` maps prompt ids to the instruction to pass. BLSP takes
one clip and no text as input: interleaved rows cannot be expressed and are skipped with reason
``not_single_clip`` (counted in export.json, listed in skipped.jsonl). Audio paths are relative to OUT (BLSP
opens them from the working directory: run it from OUT, or export with ``--absolute-paths``).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import IO

from align_data.errors import AlignDataError
from align_data.export.base import (
    ExportFormat,
    ExportOptions,
    Tally,
    clip_id,
    is_single_clip,
    speech_clips,
)
from align_data.export.files import (
    AudioTree,
    atomic_file,
    discard,
    json_document,
    json_line,
    write_bytes,
)
from align_data.export.nemo_manifest import PARTS, merge_parts
from align_data.export.source import SourceCorpus
from align_data.schemas import Record


class BlspShard:
    """One source shard → FLAC files and per-(split, prompt) jsonl parts."""

    def __init__(self, out: Path, shard_id: int, options: ExportOptions, corpus: SourceCorpus) -> None:
        self.out, self.shard_id = out, shard_id
        self.audio = AudioTree(out, shard_id, options.absolute_paths)
        self.stack = ExitStack()
        self.parts: dict[str, IO[bytes]] = {}
        self.instructions: dict[str, str] = {}

    def _part(self, name: str) -> IO[bytes]:
        if name not in self.parts:
            rel = f"{PARTS}/{name}/{self.shard_id:05d}.jsonl"
            self.parts[name] = self.stack.enter_context(atomic_file(self.out / rel))
        return self.parts[name]

    def add(self, record: Record, tally: Tally) -> None:
        if not is_single_clip(record):
            tally.skip(record, "not_single_clip")
            return
        if not record.targets:
            tally.skip(record, "no_targets")
            return
        (clip,) = speech_clips(record)
        path = self.audio.write(clip_id(record, 0), clip.flac)
        for target in record.targets:
            known = self.instructions.setdefault(target.prompt_id, target.prompt)
            if known != target.prompt:
                raise AlignDataError(f"{record.id}: prompt id {target.prompt_id!r} has two instructions "
                                     f"({known!r} and {target.prompt!r}); fix the prompt catalog")
            line = {"audio": path, "text": target.response, "instruction": target.prompt,
                    "prompt_id": target.prompt_id, "task": target.task, "row_id": record.id,
                    "transcript": clip.transcript, "duration": clip.duration_s}
            self._part(f"{record.split}/{target.prompt_id}").write(json_line(line))
        tally.exported(record, items=len(record.targets))

    def close(self) -> list[str]:
        self.stack.close()
        return self.audio.written + [f"{PARTS}/{name}/{self.shard_id:05d}.jsonl" for name in self.parts]

    def abort(self) -> None:
        discard(self.stack)

    def info(self) -> dict:
        return {"instructions": dict(sorted(self.instructions.items()))}


def finalize(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict]) -> list[str]:
    """``{split}/{prompt_id}.jsonl`` from the parts, and ``instructions.json`` (prompt id → instruction)."""
    instructions: dict[str, str] = {}
    for marker in markers:
        for pid, text in marker["info"]["instructions"].items():
            if instructions.setdefault(pid, text) != text:
                raise AlignDataError(f"prompt id {pid!r} has two instructions across shards; fix the prompt catalog")
    files = merge_parts(out, markers)
    write_bytes(out / "instructions.json", json_document(dict(sorted(instructions.items()))))
    return files + ["instructions.json"]


BLSP = ExportFormat(
    name="blsp",
    summary="BLSP jsonl ({audio, text}) per split and instruction + FLAC tree; single-clip rows only",
    open_shard=BlspShard,
    finalize=finalize,
    writes_audio_tree=True,
)
