"""Readers for the exported files, following each consumer's documented fields, and the source rows to compare."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf

from align_data.schemas import Record, record_from_row


def source_rows(build_dir: Path) -> list[Record]:
    """Every row of a build, in shard order."""
    return [record_from_row(row) for path in sorted((build_dir / "shards").glob("*.parquet"))
            for row in pq.read_table(path).to_pylist()]


def flac_seconds(path_or_bytes) -> float:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    info = sf.info(source)
    return info.frames / info.samplerate


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def nemo_items(manifest: Path) -> list[dict]:
    """Manifest lines as NeMo's SpeechLLM collection reads them (``SpeechLLMAudioTextCollection``): the audio
    key ``audio_filepath`` (a path, or a list for multi-audio rows), a relative path with a folder part taken
    relative to the manifest's folder, ``duration``, ``context`` (default prompt when absent) and ``answer``
    (falling back to ``text``)."""
    items = []
    for line in read_jsonl(manifest):
        audio = line["audio_filepath"]
        paths = [audio] if isinstance(audio, str) else audio
        resolved = []
        for rel in paths:
            path = Path(rel)
            if not path.is_absolute() and path.parent != Path("."):
                path = manifest.parent / path
            resolved.append(path)
        items.append({
            "audio_file": resolved[0] if isinstance(audio, str) else resolved,
            "duration": line["duration"],
            "context": line.get("context", "what does this audio mean"),
            "answer": line.get("answer", line.get("text", "na")),
            "line": line,
        })
    return items


def blsp_items(dataroot: Path, manifest: str) -> list[dict]:
    """A BLSP manifest read the way its ``load_speech_text_paired_dataset`` does: ``datasets.load_dataset``
    of the jsonl under ``dataroot``, then ``audio`` opened with soundfile from the working directory and
    ``text`` as the response to learn. Each item gets ``is_readable`` as BLSP computes it."""
    import datasets

    rows = datasets.load_dataset(str(dataroot), data_files=[manifest], split="train")
    items = []
    for row in rows:
        try:
            sf.info(row["audio"])
            readable = True
        except RuntimeError:  # soundfile raises LibsndfileError (a RuntimeError) for missing or bad files
            readable = False
        items.append({**row, "is_readable": readable})
    return items


def nemo_conversations(manifest: Path) -> list[dict]:
    """A ``multimodal_conversation`` jsonl read as NeMo's ``NeMoMultimodalConversationJsonlAdapter`` reads it: turns
    with the role lowercased, an audio turn's path through ``get_full_path`` (a relative path under 255 characters
    is taken from the manifest's folder when a file is there), its ``duration`` and ``offset`` (default 0)."""
    items = []
    for line in read_jsonl(manifest):
        turns = []
        for turn in line["conversations"]:
            item = {"role": turn["from"].lower(), "type": turn["type"]}
            if turn["type"] == "audio":
                path = Path(turn["value"])
                if not path.is_absolute() and len(turn["value"]) < 255 and (manifest.parent / path).is_file():
                    path = manifest.parent / path
                item.update(path=path, duration=turn.get("duration"), offset=turn.get("offset", 0.0))
            else:
                item["text"] = turn["value"]
            turns.append(item)
        items.append({"id": line["id"], "turns": turns, "custom": line.get("custom"), "line": line})
    return items
