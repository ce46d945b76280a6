"""The report's listening table: a few rows of every voice (covering the tasks), their audio beside the page.

Rows are chosen while the shards stream (the first row of each (voice, task) in shard order: deterministic, constant
memory), then only the chosen rows are read again with their FLAC bytes, which are copied unchanged into
``report/audio/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pyarrow.parquet as pq

from align_data.schemas.record import TASKS

PER_VOICE = 2  # rows shown per voice, of different tasks where the voice spoke several
AUDIO_DIR = "audio"


def voice_key(voice: dict | None) -> str:
    return f"{voice['backend']}:{voice['voice_id']}" if voice else "none"


@dataclass(slots=True)
class SampleChooser:
    """The first (shard, row id) of every (voice, task) seen, in the order the rows streamed."""

    first: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict, shard_id: int) -> None:
        key = voice_key(row.get("voice"))
        self.rows[key] = self.rows.get(key, 0) + 1
        self.first.setdefault(key, {}).setdefault(row.get("task") or "unknown", (shard_id, row["id"]))

    def choose(self, per_voice: int = PER_VOICE) -> list[tuple[str, int, str]]:
        """(voice, shard id, row id) for up to ``per_voice`` rows of each voice, the busiest voice first. The task
        order turns from voice to voice, so that the table shows every task even where voices are many."""
        chosen = []
        order = list(TASKS)
        for n, key in enumerate(sorted(self.first, key=lambda k: (-self.rows[k], k))):
            rotation = order[n % len(order):] + order[:n % len(order)]
            tasks = sorted(self.first[key], key=lambda t: rotation.index(t) if t in rotation else len(rotation))
            chosen += [(key, *self.first[key][t]) for t in tasks[:per_voice]]
        return chosen


@dataclass(slots=True)
class Sample:
    """One row as the listening table shows it; ``audio`` are paths relative to the page."""

    voice: str
    row: dict
    audio: list[str]


def read_samples(out: Path, chosen: Sequence[tuple[str, int, str]], folder: Path) -> list[Sample]:
    """The chosen rows with their audio written to ``folder/audio/ID_N.flac`` (the corpus's own bytes)."""
    from align_data.pipeline.writers import shard_name

    by_shard: dict[int, list[str]] = {}
    for _, shard, row_id in chosen:
        by_shard.setdefault(shard, []).append(row_id)
    rows: dict[str, dict] = {}
    for shard, ids in by_shard.items():
        table = pq.read_table(out / "shards" / f"{shard_name(shard)}.parquet", filters=[("id", "in", ids)])
        rows.update({r["id"]: r for r in table.to_pylist()})
    (folder / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    samples = []
    for key, _, row_id in chosen:
        row = rows[row_id]
        paths = []
        for i, clip in enumerate(row.get("audio") or ()):
            name = f"{AUDIO_DIR}/{_safe(row_id)}_{i}.flac"
            (folder / name).write_bytes(clip["bytes"])
            paths.append(name)
        row.pop("audio", None)
        samples.append(Sample(key, row, paths))
    return samples


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _player(path: str) -> str:
    return f"<audio controls preload='metadata' src='{escape(path)}'></audio>"


def _segments(row: dict, audio: list[str]) -> str:
    """The row's input in order: text spans as they are, speech spans marked with their player."""
    parts = []
    for seg in row.get("segments") or ():
        if seg["modality"] == "speech":
            index = seg.get("audio_index")
            player = _player(audio[index]) if index is not None and index < len(audio) else ""
            parts.append(f"<span class='speech' title='spoken'>{player}<br>{escape(seg['text'])}</span>")
        else:
            parts.append(f"<span class='text'>{escape(seg['text'])}</span>")
    return " ".join(parts)


def _attributes(row: dict) -> str:
    v, p, q = row.get("voice") or {}, row.get("paralinguistics") or {}, row.get("quality")
    lines = [f"{v.get('gender', '?')}, {v.get('accent', '?')} ({v.get('language', '?')})"]
    if v.get("mix"):
        lines.append("blend " + " + ".join(f"{m['voice']} {m['weight']:.2f}" for m in v["mix"]))
    if p:
        f0 = f"{p['f0_mean_hz']:.0f} Hz" if p.get("f0_mean_hz") is not None else "no f0"
        lines.append(f"{p['duration_s']:.1f} s; pitch {p['pitch_level']} ({f0}); speed {p['speed_level']} "
                     f"({p['speech_rate_wps']:.1f} w/s); volume {p['volume_level']}")
        noise = f"SNR {p['snr_db']:.0f} dB" if p.get("snr_db") is not None else "clean"
        echo = f", C50 {p['c50_db']:.0f} dB" if p.get("c50_db") is not None else ""
        lines.append(noise + echo)
    if q:
        lines.append(f"ASR WER {q['wer']:.2f}")
    return "<br>".join(escape(line) for line in lines)


def _targets(row: dict) -> str:
    out = []
    for t in row.get("targets") or ():
        out.append(f"<div class='target'><b>{escape(t['task'])}</b> <span class='prompt'>{escape(t['prompt'])}"
                   f"</span><br>{escape(t['response'])}</div>")
    if row.get("description"):
        out.append(f"<details><summary>seed transcript</summary>{escape(row['description'])}</details>")
    return "".join(out) or "<span class='note'>no target (interleaved rows train on their own text)</span>"


def render_samples(samples: Iterable[Sample]) -> str:
    """The listening table's HTML."""
    head = "<tr><th>voice</th><th>task</th><th>input: text and <span class='speech'>speech</span></th>" \
           "<th>attributes (measured)</th><th>target</th></tr>"
    body = [f"<tr><td>{escape(s.voice)}</td><td>{escape(s.row.get('task') or '')}<br>"
            f"<span class='note'>{escape(s.row.get('split') or '')}</span></td>"
            f"<td class='input'>{_segments(s.row, s.audio)}</td><td class='attrs'>{_attributes(s.row)}</td>"
            f"<td class='input'>{_targets(s.row)}</td></tr>" for s in samples]
    return f"<table class='samples'>{head}{''.join(body)}</table>"
