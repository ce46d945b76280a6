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

from pathlib import Path

from align_data.errors import AlignDataError
from align_data.export.base import (
    ExportFormat,
    ExportOptions,
    Tally,
    clip_id,
    is_single_clip,
    speech_clips,
)
from align_data.export.files import json_document, json_line, write_bytes
from align_data.export.parts import JsonlPartsShard, merge_parts
from align_data.export.source import SourceCorpus
from align_data.schemas import Record


class BlspShard(JsonlPartsShard):
    """One source shard → FLAC files and per-(split, prompt) jsonl parts, and the instructions it met."""

    def __init__(self, out: Path, shard_id: int, options: ExportOptions, corpus: SourceCorpus) -> None:
        super().__init__(out, shard_id, options, corpus)
        self.instructions: dict[str, str] = {}

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
