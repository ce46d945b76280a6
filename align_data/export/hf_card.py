"""The HF dataset card (README.md): YAML ``configs`` that ``load_dataset`` reads, then counts, voices and provenance."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from align_data import __version__
from align_data.export.base import ExportOptions, Tally
from align_data.export.files import write_bytes
from align_data.export.source import SourceCorpus

TASK_RECIPES = {
    "continuation": "BLSP: speech of a text segment; target = the LLM's continuation of its transcript.",
    "description": "DeSTA2: speech + a question about it; target = the LLM's answer from the seed transcript "
                   "of measured paralinguistic attributes.",
    "interleaved": "InSerter: text with spoken spans; target = the corpus text that follows.",
}


def _q(text: str) -> str:
    """A YAML scalar: JSON strings are valid YAML, so quote through json."""
    return json.dumps(text, ensure_ascii=False)


def _size_category(rows: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((label for bound, label in bounds if rows < bound), "10M<n<100M")


def _rows_by_task_split(out: Path, files: list[str]) -> Counter:
    """Rows per (task, split), from the Parquet footers (``data/<task>/<split>-NNNNN.parquet``)."""
    counts: Counter = Counter()
    for rel in files:
        _, task, name = rel.split("/")
        counts[(task, name.rsplit("-", 1)[0])] += pq.read_metadata(out / rel).num_rows
    return counts


def card_license(sources: list[dict]) -> str:
    """The card's licence: the sources' one licence in lowercase (the Hub's ids are lowercase SPDX), 'other' when
    they differ, 'unknown' when a source does not say."""
    found = {(s.get("license") or "").strip().lower() for s in sources} or {""}
    if "" in found:
        return "unknown"
    return found.pop() if len(found) == 1 else "other"


def _yaml_header(totals: Tally, cells: Counter, license: str) -> list[str]:
    languages = sorted({lang.split("-")[0] for lang in totals.languages if lang})
    plain = re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", license) is not None
    lines = ["---", f"license: {license if plain else _q(license)}", f"pretty_name: {_q('align-data speech-text alignment corpus')}"]
    if languages:
        lines += ["language:"] + [f"- {_q(lang)}" for lang in languages]
    lines += ["tags:", "- speech", "- synthetic-speech", "- speech-llm", "- align-data",
              "size_categories:", f"- {_q(_size_category(totals.rows_exported))}", "configs:"]
    tasks = sorted({task for task, _ in cells})
    splits = sorted({split for _, split in cells}, key=lambda s: (s != "train", s))
    configs = [("default", "*", splits)] + [(t, t, [s for s in splits if (t, s) in cells]) for t in tasks]
    for name, folder, config_splits in configs:
        lines += [f"- config_name: {_q(name)}", "  data_files:"]
        for split in config_splits:
            lines += [f"  - split: {_q(split)}", f"    path: {_q(f'data/{folder}/{split}-*.parquet')}"]
    return lines + ["---", ""]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def card_text(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict],
              files: list[str]) -> str:
    totals = Tally()
    for marker in markers:
        totals.merge(Tally.from_json(marker["tally"]))
    cells = _rows_by_task_split(out, files)
    tasks = sorted({task for task, _ in cells})
    splits = sorted({split for _, split in cells}, key=lambda s: (s != "train", s))
    m = corpus.manifest
    sources = corpus.config.get("config", {}).get("sources", [])
    license = card_license(sources)
    lines = _yaml_header(totals, cells, license)
    lines += ["# align-data speech-text alignment corpus", "",
              (f"Synthetic speech-text training data for speech LLMs, built by align-data {m.get('package_version')} "
              f"(config hash `{corpus.config_hash}`) and exported with `align-data export --format hf` "
              f"(align-data {__version__}). Text from the sources below was spoken by TTS voices; targets were "
              "written by an LLM or taken from the corpus, per task."), "",
              "## Contents", "",
              (f"{totals.rows_exported} rows in {len(files)} Parquet files, {totals.audio_seconds / 3600:.3f} hours "
              "of 16 kHz mono audio."), ""]
    lines += _table(["task"] + splits + ["recipe"],
                    [[t] + [str(cells.get((t, s), 0)) for s in splits] + [TASK_RECIPES.get(t, "")] for t in tasks])
    lines += _table(["split", "rows", "hours", "audio seconds"],
                    [[s, str(totals.splits[s]), f"{totals.split_seconds[s] / 3600:.3f}", f"{totals.split_seconds[s]:.1f}"]
                     for s in splits])
    skipped = sum(totals.skipped.values())
    lines += [(f"Rows of the selected tasks ({', '.join(options.tasks)}) in the build: {totals.rows_selected}; "
              f"exported {totals.rows_exported}, skipped {skipped}. The build itself recorded "
              f"{m.get('errors', 0)} failed and {m.get('filtered', 0)} filtered segments (not rows, not here)."), ""]
    lines += ["## Voices", ""]
    lines += _table(["voice (backend:id)", "rows"], [[v, str(n)] for v, n in sorted(totals.voices.items())])
    lines += _table(["language", "rows"], [[lang, str(n)] for lang, n in sorted(totals.languages.items())])
    lines += ["## Loading", "", "```python", "import datasets",
              "ds = datasets.load_dataset(\"PATH/TO/THIS/FOLDER\")            # every task",
              f"ds = datasets.load_dataset(\"PATH/TO/THIS/FOLDER\", {_q(tasks[0])})  # one task" if tasks else "",
              "row = ds[\"train\"][0]",
              "row[\"audio\"][0]  # the first clip, decoded by datasets' Audio feature", "```", "",
              ("Where `datasets` cannot decode audio (it needs torchcodec), read the FLAC bytes instead: "
              "`ds.cast_column(\"audio\", datasets.List(datasets.Audio(decode=False)))`, then "
              "`soundfile.read(io.BytesIO(row[\"audio\"][0][\"bytes\"]))`."), "",
              ("Columns are align-data's record: `text`, `task`, `segments` (text and speech spans in order; a speech "
              "span's `audio_index` points into `audio`), `audio` (one FLAC clip per speech span), `audio_meta`, "
              "`voice`, `acoustics`, `paralinguistics`, `description` (the DeSTA2 seed transcript), `targets` "
              "(`prompt`, `response` and the model that wrote it), `split`, `source`, `provenance` (source licence, TTS engine "
              "and version, synthesis and LLM seeds, sampling, the few-shot examples shown and the repair attempt "
              "kept)."), "",
              "## Source text and license", ""]
    lines += _table(["source", "path", "format", "license"],
                    [[s.get("name", ""), f"`{s.get('path', '')}`", s.get("format", ""), s.get("license") or "unknown"]
                     for s in sources])
    if license == "unknown":
        lines += [("A source of the build config does not say its licence (`sources[].license`), so this card says "
                  "`unknown`: check the license of each source above before redistributing this dataset."), ""]
    else:
        lines += [(f"Licences as the build config states them (`sources[].license`); every row also carries its "
                  f"source's licence in `provenance.license`. The card's licence: `{license}`."), ""]
    lines += ["## Build config", "", "The resolved config of the build (also in `source_config.json`):", "",
              "```json", json.dumps(corpus.config, indent=1, sort_keys=True, ensure_ascii=False), "```", "",
              "## Provenance", "",
              f"- build config hash: `{corpus.config_hash}`",
              f"- corpus fingerprint (sha256 over the build's Parquet shards): `{corpus.fingerprint}`",
              f"- record schema version: {m.get('schema_version')}",
              f"- shards: {len(corpus.shards)} exported of {m.get('planned_shards')} planned"
              + (f"; failed in the build: {', '.join(m['failed_shards'])}" if m.get("failed_shards") else ""),
              ""]
    return "\n".join(lines)


def write_card(out: Path, corpus: SourceCorpus, options: ExportOptions, markers: list[dict],
               files: list[str]) -> None:
    write_bytes(out / "README.md", card_text(out, corpus, options, markers, files).encode())
