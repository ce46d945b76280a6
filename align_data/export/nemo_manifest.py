"""NeMo speech-LLM manifests: JSON lines with ``audio_filepath``, ``duration``, ``text``, ``context``, ``answer``.

Fields follow NeMo's SpeechLLM data docs and ``SpeechLLMAudioTextCollection``: ``context`` is the prompt,
``answer`` the target (``context_key``/``answer_key`` default to these names), ``text`` the transcript.
Rows whose input is one clip go to ``{split}.jsonl`` (NeMo's ``AudioTextDataset``). Interleaved rows (text and
several clips) go to ``{split}_multi_audio.jsonl`` for NeMo's ``MultiAudioTextDataset``: ``audio_filepath`` and
``duration`` are lists and ``context`` holds the text spans with AUDIO_LOCATOR where each clip goes (set the
dataset's ``audio_locator`` to it). One line per (row, target). A relative audio path (``audio/NNNNN/x.flac``)
is resolved by NeMo against the manifest's folder, which is OUT; the NeMo ``get_full_path`` read for this takes
one path, not a list, so multi-audio manifests should be exported with ``--absolute-paths``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import IO

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
    concat_files,
    discard,
    json_line,
)
from align_data.export.source import SourceCorpus
from align_data.schemas import Record, Target

AUDIO_LOCATOR = "|audio|"
PARTS = "progress/parts"


def voice_fields(record: Record) -> dict:
    """Speaker fields NeMo manifests commonly carry (``speaker``, ``lang``) plus gender and accent."""
    v = record.voice
    if v is None:
        return {}
    return {"speaker": f"{v.backend}:{v.voice_id}", "lang": v.language, "gender": v.gender, "accent": v.accent}


def interleaved_context(record: Record, target: Target, paths: dict[int, str],
                        durations: dict[int, float]) -> tuple[str, list[str], list[float]]:
    """The row's input as text with AUDIO_LOCATOR per speech span, and the clips in the order they appear."""
    pieces, audio, seconds = [], [], []
    for seg in record.segments:
        if seg.modality == "speech":
            pieces.append(AUDIO_LOCATOR)
            audio.append(paths[seg.audio_index])
            seconds.append(durations[seg.audio_index])
        else:
            pieces.append(seg.text)
    body = " ".join(pieces)
    context = f"{target.prompt}\n\n{body}" if target.prompt else body
    return context, audio, seconds


class NemoShard:
    """One source shard → FLAC files in the audio tree and per-split manifest parts."""

    def __init__(self, out: Path, shard_id: int, options: ExportOptions, corpus: SourceCorpus) -> None:
        self.out, self.shard_id = out, shard_id
        self.audio = AudioTree(out, shard_id, options.absolute_paths)
        self.stack = ExitStack()
        self.parts: dict[str, IO[bytes]] = {}

    def _part(self, name: str) -> IO[bytes]:
        if name not in self.parts:
            rel = f"{PARTS}/{name}/{self.shard_id:05d}.jsonl"
            self.parts[name] = self.stack.enter_context(atomic_file(self.out / rel))
        return self.parts[name]

    def add(self, record: Record, tally: Tally) -> None:
        if not record.targets:
            tally.skip(record, "no_targets")
            return
        clips = speech_clips(record)
        paths = {c.index: self.audio.write(clip_id(record, c.index), c.flac) for c in clips}
        durations = {c.index: c.duration_s for c in clips}
        single = is_single_clip(record)
        base = {"row_id": record.id, "task": record.task, "split": record.split, **voice_fields(record)}
        for target in record.targets:
            line = {**base, "prompt_id": target.prompt_id, "answer": target.response}
            if single:
                line.update(audio_filepath=paths[0], duration=durations[0], text=clips[0].transcript,
                            context=target.prompt)
                self._part(record.split).write(json_line(line))
            else:
                context, audio, seconds = interleaved_context(record, target, paths, durations)
                line.update(audio_filepath=audio, duration=seconds, text=record.text, context=context)
                self._part(f"{record.split}_multi_audio").write(json_line(line))
        tally.exported(record, items=len(record.targets))

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


def finalize(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict]) -> list[str]:
    return merge_parts(out, markers)


NEMO = ExportFormat(
    name="nemo",
    summary="NeMo speech-LLM JSON-lines manifests (audio_filepath, duration, text, context, answer) + FLAC tree",
    open_shard=NemoShard,
    finalize=finalize,
    writes_audio_tree=True,
)
