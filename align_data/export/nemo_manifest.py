"""NeMo's legacy speech-LLM manifests (``--format nemo-legacy``, for nemo_toolkit <= 2.7): JSON lines with
``audio_filepath``, ``duration``, ``text``, ``context``, ``answer``.

These are read by ``AudioTextDataset`` / ``MultiAudioTextDataset`` of ``nemo/collections/multimodal/speech_llm``
(``SpeechLLMAudioTextCollection``), which nemo_toolkit 2.7 marks deprecated and 3.0 no longer has; NeMo 3.0's
SALM reads ``--format nemo``. ``context`` is the prompt, ``answer`` the target (``context_key``/``answer_key``
default to these names), ``text`` the transcript. Rows whose input is one clip go to ``{split}.jsonl``
(``AudioTextDataset``). Interleaved rows (text and several clips) go to ``{split}_multi_audio.jsonl`` for
``MultiAudioTextDataset``: ``audio_filepath`` and ``duration`` are lists and ``context`` holds the text spans with
AUDIO_LOCATOR where each clip goes (set that dataset's ``audio_locator`` to it; the tag means something to this
reader only). One line per (row, target). A relative audio path (``audio/NNNNN/x.flac``) is resolved by NeMo's
``get_full_path`` against the manifest's folder, which is OUT; it takes lists too, so multi-audio manifests need no
``--absolute-paths`` either.
"""

from __future__ import annotations

from pathlib import Path

from align_data.export.base import (
    ExportFormat,
    ExportOptions,
    Tally,
    clip_id,
    is_single_clip,
    speech_clips,
)
from align_data.export.files import json_line
from align_data.export.parts import JsonlPartsShard, merge_parts
from align_data.export.source import SourceCorpus
from align_data.schemas import Record, Target

AUDIO_LOCATOR = "|audio|"


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


class NemoShard(JsonlPartsShard):
    """One source shard → FLAC files in the audio tree and per-split manifest parts."""

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


def finalize(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict]) -> list[str]:
    return merge_parts(out, markers)


NEMO_LEGACY = ExportFormat(
    name="nemo-legacy",
    summary="NeMo <= 2.7 speech-LLM manifests (audio_filepath, duration, text, context, answer) + FLAC tree",
    open_shard=NemoShard,
    finalize=finalize,
    writes_audio_tree=True,
)
