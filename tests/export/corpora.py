"""A hand-written build for the export tests: every task, both splits, rows with fixed ids, tone clips of known
lengths and fixed targets (no LLM). It goes through the pipeline's own shard and manifest writers, so its
layout is a real build's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from align_data.pipeline.manifest import write_manifest
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import ShardResult
from align_data.pipeline.writers import write_shard
from align_data.schemas import AudioClip, Record, Segment, SourceRef, Target, Voice
from align_data.stages.tts.audio import encode_flac

CONTINUE = "Continue the following text in a coherent and engaging style with less than 40 words."
HEAR = "What can you hear from the audio?"
SPEAKER = "Describe the speaker and the way they speak."
VOICE = Voice("espeak", "en-us+f2", "female", "American", "en-us", 175.0, 50.0, 100.0)


def tone(seconds: float, freq: float = 220.0) -> AudioClip:
    """A 16 kHz FLAC tone of exactly ``seconds`` (rounded to samples)."""
    n = round(seconds * 16000)
    samples = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 16000)
    return AudioClip(flac=encode_flac(samples, 16000), sample_rate=16000, num_samples=n)


def _record(rid: str, shard: int, text: str, task: str, spans: list[tuple[str, str, float]],
            targets: list[tuple[str, str, str, str]], split: str = "train") -> Record:
    """A row whose ``spans`` ((modality, text, clip seconds)) cover ``text`` in order."""
    segments, audio, pos = [], [], 0
    for modality, span, seconds in spans:
        start = text.index(span, pos)
        pos = start + len(span)
        index = None
        if modality == "speech":
            index = len(audio)
            audio.append(tone(seconds, 200.0 + 40 * len(audio)))
        segments.append(Segment(modality, span, start, pos, index))
    return Record(
        id=rid, shard_id=shard, source=SourceRef("tiny", rid, 0), text=text, task=task,
        segments=tuple(segments), audio=tuple(audio), voice=VOICE,
        description=f'[00:00:00 - 00:00:01]: "{text}" (Gender: Female)',
        targets=tuple(Target(t, pid, prompt, resp, "hand", "none", "stop") for t, pid, prompt, resp in targets),
        split=split)


def mixed_records() -> dict[int, list[Record]]:
    """Two shards with continuation, description and interleaved rows in train and heldout, including a row
    with two targets, a row with three clips and a row without targets."""
    return {
        0: [
            _record("mix-000", 0, "The kettle boiled over.", "continuation",
                    [("speech", "The kettle boiled over.", 1.25)],
                    [("continuation", "blsp-continue", CONTINUE, "She wiped the stove.")]),
            _record("mix-001", 0, "The old dog slept by the fire.", "description",
                    [("speech", "The old dog slept by the fire.", 1.5)],
                    [("description", "desta-hear", HEAR, "A woman talks about a dog."),
                     ("description", "desta-speaker", SPEAKER, "An American woman, calm and clear.")]),
            _record("mix-002", 0, "Rain fell on the harbour and the boats rocked in the grey water today.",
                    "interleaved",
                    [("speech", "Rain fell", 0.5), ("text", "on the harbour", 0), ("speech", "and the boats rocked", 0.75),
                     ("text", "in the grey", 0), ("speech", "water today.", 0.625)],
                    [("interleaved", "inserter-next", "", "By night the wind had dropped.")], split="heldout"),
            _record("mix-003", 0, "Nobody answered.", "continuation", [("speech", "Nobody answered.", 0.4)], []),
        ],
        1: [
            _record("mix-100", 1, "Scientists measured the lake.", "continuation",
                    [("speech", "Scientists measured the lake.", 2.0)],
                    [("continuation", "blsp-continue", CONTINUE, "They found it warmed quickly.")],
                    split="heldout"),
            _record("mix-101", 1, "Please bring your own water bottle.", "description",
                    [("speech", "Please bring your own water bottle.", 1.0)],
                    [("description", "desta-hear", HEAR, "Someone asks you to bring water.")]),
            _record("mix-102", 1, "The train left early and everyone missed it.", "interleaved",
                    [("text", "The train left early", 0), ("speech", "and everyone missed it.", 0.875)],
                    [("interleaved", "inserter-next", "", "They waited for the next one.")]),
        ],
    }


def write_build(out: Path, records: dict[int, list[Record]], config) -> Path:
    """A build folder from hand-made records, through the pipeline's shard and manifest writers."""
    out.mkdir(parents=True)
    config_hash = config.hash()
    (out / "config.json").write_text(json.dumps({"config_hash": config_hash, "config": config.model_dump(mode="json")},
                                                indent=1, sort_keys=True))
    specs = [ShardSpec(sid, 0, sid, sid + 1, 0) for sid in sorted(records)]
    (out / "plan.json").write_text(json.dumps({"limit": None, "shards": [s.to_json() for s in specs]}))
    sidecars = [write_shard(out, ShardResult(spec, records[spec.shard_id]), config_hash) for spec in specs]
    write_manifest(out, config_hash, [s.to_json() for s in specs], sidecars, {})
    return out
