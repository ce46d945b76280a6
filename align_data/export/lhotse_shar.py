"""lhotse Shar: per split a folder of ``cuts.NNNNNN.jsonl.gz`` + ``recording.NNNNNN.tar``, one cut per clip.

Read back with ``lhotse.CutSet.from_shar(in_dir=OUT/<split>)``. A Shar cut's recording is a placeholder
(source type ``shar``) filled from the tar, where each clip is ``<cut_id>.flac`` (the build's FLAC bytes, not
re-encoded) followed by ``<cut_id>.json`` (the recording manifest). Shard NNNNNN is the source shard id, so a
split folder may skip numbers. Each cut has one supervision over the whole clip: ``text`` is the clip's
transcript, ``speaker``/``gender``/``language`` come from the voice, and ``custom`` carries the row: its id,
task, input segments, voice, paralinguistics, DeSTA2 seed transcript and targets. The manifests are written
here (not with lhotse's SharWriter) so the bytes are reproducible: lhotse's gzip headers carry the time.
"""

from __future__ import annotations

import tarfile
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import IO

from align_data.export.base import (
    ExportFormat,
    ExportOptions,
    Tally,
    clip_id,
    speech_clips,
)
from align_data.export.files import (
    atomic_file,
    discard,
    gzip_stream,
    json_line,
)
from align_data.export.source import SourceCorpus
from align_data.files import add_tar_member
from align_data.schemas import Record


def _recording(cid: str, sample_rate: int, num_samples: int) -> dict:
    return {"id": cid, "sources": [{"type": "shar", "channels": [0], "source": ""}],
            "sampling_rate": sample_rate, "num_samples": num_samples, "duration": num_samples / sample_rate,
            "channel_ids": [0]}


def row_custom(record: Record) -> dict:
    """What a supervision's ``custom`` carries about its row (the same for every clip of the row)."""
    return {
        "row_id": record.id,
        "task": record.task,
        "split": record.split,
        "source": asdict(record.source),
        "segments": [{"modality": s.modality, "text": s.text, "audio_index": s.audio_index}
                     for s in record.segments],
        "voice": None if record.voice is None else asdict(record.voice),
        "paralinguistics": None if record.paralinguistics is None else asdict(record.paralinguistics),
        "description": record.description,
        "targets": [asdict(t) for t in record.targets],
    }


def cut_dicts(record: Record) -> list[tuple[dict, bytes]]:
    """One lhotse MonoCut dict per clip of the row, with the clip's FLAC bytes."""
    custom = row_custom(record)
    voice = record.voice
    cuts = []
    for clip in speech_clips(record):
        cid = clip_id(record, clip.index)
        duration = clip.duration_s
        supervision = {
            "id": cid, "recording_id": cid, "start": 0.0, "duration": duration, "channel": 0,
            "text": clip.transcript,
            "language": None if voice is None else voice.language,
            "speaker": None if voice is None else f"{voice.backend}:{voice.voice_id}",
            "gender": None if voice is None else voice.gender,
            "custom": {**custom, "audio_index": clip.index},
        }
        cut = {
            "id": cid, "start": 0.0, "duration": duration, "channel": 0, "supervisions": [supervision],
            "recording": _recording(cid, clip.sample_rate, clip.num_samples),
            "custom": {"row_id": record.id, "task": record.task, "split": record.split,
                       "audio_index": clip.index},
            "type": "MonoCut",
        }
        cuts.append((cut, clip.flac))
    return cuts


class LhotseShard:
    """One source shard → per split, one Shar shard (cuts jsonl.gz + recording tar) numbered by the shard id."""

    def __init__(self, out: Path, shard_id: int, options: ExportOptions, corpus: SourceCorpus) -> None:
        self.out, self.shard_id = out, shard_id
        self.stack = ExitStack()
        self.splits: dict[str, tuple[IO[bytes], tarfile.TarFile]] = {}

    def _files(self, split: str) -> list[str]:
        name = f"{self.shard_id:06d}"
        return [f"{split}/cuts.{name}.jsonl.gz", f"{split}/recording.{name}.tar"]

    def _open(self, split: str) -> tuple[IO[bytes], tarfile.TarFile]:
        if split not in self.splits:
            cuts_rel, tar_rel = self._files(split)
            cuts = self.stack.enter_context(gzip_stream(self.stack.enter_context(atomic_file(self.out / cuts_rel))))
            tar_handle = self.stack.enter_context(atomic_file(self.out / tar_rel))
            tar = self.stack.enter_context(tarfile.open(fileobj=tar_handle, mode="w", format=tarfile.PAX_FORMAT))
            self.splits[split] = (cuts, tar)
        return self.splits[split]

    def add(self, record: Record, tally: Tally) -> None:
        cuts, tar = self._open(record.split)
        items = cut_dicts(record)
        for cut, flac in items:
            cuts.write(json_line(cut))
            add_tar_member(tar, f"{cut['id']}.flac", flac)
            add_tar_member(tar, f"{cut['id']}.json", json_line(cut["recording"]))
        tally.exported(record, items=len(items))

    def close(self) -> list[str]:
        self.stack.close()
        return [rel for split in self.splits for rel in self._files(split)]

    def abort(self) -> None:
        discard(self.stack)

    def info(self) -> dict:
        return {}


def finalize(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict]) -> list[str]:
    """Nothing spans shards: each split folder is complete once its shards are (and must hold only Shar files)."""
    return []


LHOTSE = ExportFormat(
    name="lhotse",
    summary="lhotse Shar folders per split (cuts jsonl.gz + FLAC recording tar), one cut per speech clip",
    open_shard=LhotseShard,
    finalize=finalize,
)
