"""Export a finished build shard by shard: per-shard completion markers (resume), then the cross-shard files.

Layout of OUT, whatever the format:
  progress/settings.json   what is being exported (format, tasks, source corpus); a rerun must match it
  progress/NNNNN.json      a shard's completion marker: its counts and the sha256 of every file it wrote (last)
  skipped.jsonl            selected rows the format cannot carry, with the reason (id, task, reason)
  source_config.json       the build's resolved config, as the build wrote it
  export.json              provenance and totals, written last
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from align_data import __version__
from align_data.errors import AlignDataError
from align_data.export.base import EXPORT_VERSION, ExportFormat, ExportOptions, Tally
from align_data.export.files import (
    atomic_file,
    describe_files,
    json_document,
    json_line,
    remove_temporaries,
    verify_files,
    write_bytes,
)
from align_data.export.source import (
    SourceCorpus,
    SourceShard,
    check_tasks,
    iter_records,
    open_corpus,
)

PROGRESS = "progress"
SETTINGS = f"{PROGRESS}/settings.json"


def formats() -> dict[str, ExportFormat]:
    """The export formats by name (imported here so that ``export`` stays cheap to import)."""
    from align_data.export.blsp_jsonl import BLSP
    from align_data.export.hf_folder import HF
    from align_data.export.lhotse_shar import LHOTSE
    from align_data.export.nemo_conversation import NEMO
    from align_data.export.nemo_manifest import NEMO_LEGACY

    return {f.name: f for f in (LHOTSE, NEMO, NEMO_LEGACY, BLSP, HF)}


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What one export call did: totals over all shards, shards written now and skipped as done, wall time."""

    out: Path
    format: str
    tasks: tuple[str, ...]
    totals: Tally
    shards_written: int
    shards_skipped: int
    seconds: float
    report: dict


def check_locations(source: Path, out: Path) -> None:
    """The output may neither sit inside the build (it would look like part of it) nor contain it."""
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise AlignDataError(f"--out {out} is inside the build folder {source}; choose a folder outside it")
    if dst in src.parents:
        raise AlignDataError(f"the build folder {source} is inside --out {out}; choose an --out that does not "
                             "contain the build")


def _settings(corpus: SourceCorpus, options: ExportOptions, out: Path) -> dict:
    settings = {
        "export_version": EXPORT_VERSION,
        "format": options.format,
        "tasks": list(options.tasks),
        "absolute_paths": options.absolute_paths,
        # the build's config, not its fingerprint: shards a resumed build adds later are exported by a rerun
        # (each shard's marker holds its own source sha256, so a changed shard is redone)
        "source": {"config_hash": corpus.config_hash},
    }
    if options.absolute_paths:  # the paths written depend on where OUT is
        settings["out"] = str(out.resolve())
    if options.audio_locator_tag is not None:
        settings["audio_locator_tag"] = options.audio_locator_tag
    return settings


def _settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_out(out: Path, settings: dict, overwrite: bool) -> None:
    """Start a new export, resume one with the same settings, or replace one when ``overwrite``."""
    saved_path = out / SETTINGS
    if out.exists() and not out.is_dir():
        raise AlignDataError(f"--out {out} is a file; choose a folder")
    if out.exists() and any(out.iterdir()):
        if not saved_path.exists():
            raise AlignDataError(f"--out {out} is not empty and holds no align-data export; choose a new or empty "
                                 "folder (--overwrite only replaces a previous export)")
        saved = json.loads(saved_path.read_text())
        if overwrite:
            shutil.rmtree(out)
        elif saved != settings:
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise AlignDataError(f"--out {out} holds an export with other settings ({', '.join(changed)} differ); "
                                 "pass --overwrite to replace it, or choose another --out")
        else:
            remove_temporaries(out)
            return
    write_bytes(out / SETTINGS, json_document(settings))


def _marker_path(out: Path, shard_id: int) -> Path:
    return out / PROGRESS / f"{shard_id:05d}.json"


def _done_marker(out: Path, shard: SourceShard, key: str) -> dict | None:
    """The shard's completion marker if it is for these settings and this source, and its files verify."""
    path = _marker_path(out, shard.shard_id)
    if not path.exists():
        return None
    try:
        marker = json.loads(path.read_text())
    except ValueError:
        return None
    if marker.get("settings") != key or marker.get("source_sha256") != shard.sha256:
        return None
    if verify_files(out, marker["files"]) is not None:
        return None
    return marker


def _export_shard(out: Path, corpus: SourceCorpus, shard: SourceShard, spec: ExportFormat,
                  options: ExportOptions, key: str) -> dict:
    """Write one shard's outputs, check that every selected row was exported or skipped, then its marker."""
    tally = Tally()
    writer = spec.open_shard(out, shard.shard_id, options, corpus)
    try:
        for record in iter_records(corpus, shard):
            tally.rows_read += 1
            if record.task not in options.tasks:
                continue
            tally.rows_selected += 1
            writer.add(record, tally)
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    expected = sum(n for task, n in shard.tasks.items() if task in options.tasks)
    accounted = tally.rows_exported + sum(tally.skipped.values())
    if tally.rows_read != shard.rows or tally.rows_selected != expected or accounted != tally.rows_selected:
        raise AlignDataError(
            f"shard {shard.shard_id}: read {tally.rows_read} rows (sidecar: {shard.rows}), selected "
            f"{tally.rows_selected} (sidecar: {expected}), exported {tally.rows_exported} + skipped "
            f"{sum(tally.skipped.values())}; the build does not match its sidecar, run `align-data validate`")
    marker = {
        "shard_id": shard.shard_id, "settings": key, "source_sha256": shard.sha256,
        "tally": tally.to_json(), "info": writer.info(), "files": describe_files(out, written),
    }
    write_bytes(_marker_path(out, shard.shard_id), json_document(marker))
    return marker


def _without_per_row_lists(marker: dict) -> dict:
    """What the run keeps of a shard's marker: counts, format info and the files that are not audio clips.

    Skipped row ids and the per-clip file list stay on disk, so memory does not grow with the corpus."""
    tally = dict(marker["tally"], skipped_ids=[])
    files = [rel for rel in marker["files"] if not rel.startswith("audio/")]
    return {"shard_id": marker["shard_id"], "tally": tally, "info": marker["info"], "files": files}


def _write_skipped(out: Path, corpus: SourceCorpus) -> None:
    """``skipped.jsonl`` from the shards' markers, read one at a time."""
    with atomic_file(out / "skipped.jsonl") as handle:
        for shard in corpus.shards:
            marker = json.loads(_marker_path(out, shard.shard_id).read_text())
            for rid, task, reason in marker["tally"]["skipped_ids"]:
                handle.write(json_line({"id": rid, "task": task, "reason": reason}))


def export_corpus(source: str | Path, out: str | Path, fmt: str, tasks: list[str] | None = None, *,
                  overwrite: bool = False, absolute_paths: bool = False, audio_locator_tag: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> ExportSummary:
    """Export the build in ``source`` to ``out`` as ``fmt``; a rerun with the same settings skips finished shards.

    ``audio_locator_tag``: for formats that mark in text where each clip goes (nemo); default: the format's own."""
    start = time.monotonic()
    known = formats()
    if fmt not in known:
        raise AlignDataError(f"unknown format {fmt!r}; choose one of: {', '.join(known)}")
    spec = known[fmt]
    if absolute_paths and not spec.writes_audio_tree:
        raise AlignDataError(f"--absolute-paths is for formats that point to audio files by path "
                             f"({', '.join(n for n, f in known.items() if f.writes_audio_tree)}); "
                             f"{fmt} keeps the audio inside its own files")
    tag = _locator_tag(spec, known, audio_locator_tag)
    source, out = Path(source), Path(out)
    check_locations(source, out)
    corpus = open_corpus(source)
    options = ExportOptions(fmt, check_tasks(corpus, tasks), absolute_paths, tag)
    settings = _settings(corpus, options, out)
    key = _settings_key(settings)
    _prepare_out(out, settings, overwrite)

    totals, markers, written = Tally(), [], 0
    for n, shard in enumerate(corpus.shards):
        marker = _done_marker(out, shard, key)
        if marker is None:
            marker = _export_shard(out, corpus, shard, spec, options, key)
            written += 1
        marker = _without_per_row_lists(marker)
        markers.append(marker)
        totals.merge(Tally.from_json(marker["tally"]))
        if progress is not None:
            progress(n + 1, len(corpus.shards))

    files = spec.finalize(out, corpus, options, markers)
    _write_skipped(out, corpus)
    write_bytes(out / "source_config.json", json_document(corpus.config))
    report = _report(corpus, options, totals, markers, sorted(files + ["skipped.jsonl", "source_config.json"]))
    write_bytes(out / "export.json", json_document(report))
    return ExportSummary(out, fmt, options.tasks, totals, written, len(corpus.shards) - written,
                         time.monotonic() - start, report)


def _locator_tag(spec: ExportFormat, known: dict[str, ExportFormat], tag: str | None) -> str | None:
    """The audio locator tag the format writes: the one asked for, else the format's default (None: it has none)."""
    if spec.audio_locator_tag is None:
        if tag is not None:
            raise AlignDataError(f"--audio-locator-tag is for "
                                 f"{', '.join(n for n, f in known.items() if f.audio_locator_tag)}; "
                                 f"{spec.name} writes no locator tag")
        return None
    from align_data.export.nemo_conversation import check_locator_tag

    return check_locator_tag(spec.audio_locator_tag if tag is None else tag)


def _report(corpus: SourceCorpus, options: ExportOptions, totals: Tally, markers: list[dict],
            files: list[str]) -> dict:
    """export.json: which corpus and config this came from, what was selected, exported and skipped."""
    m = corpus.manifest
    counts = totals.to_json()
    counts.pop("skipped_ids")
    return {
        "export_version": EXPORT_VERSION,
        "package_version": __version__,
        "format": options.format,
        "tasks": list(options.tasks),
        "absolute_paths": options.absolute_paths,
        **({} if options.audio_locator_tag is None else {"audio_locator_tag": options.audio_locator_tag}),
        "source": {
            "config_hash": corpus.config_hash, "fingerprint": corpus.fingerprint,
            "schema_version": m.get("schema_version"), "package_version": m.get("package_version"),
            "rows": m.get("rows"), "errors": m.get("errors"), "filtered": m.get("filtered"),
            "audio_seconds": m.get("audio_seconds"), "tasks": m.get("tasks"), "splits": m.get("splits"),
            "planned_shards": m.get("planned_shards"), "complete_shards": m.get("complete_shards"),
            "failed_shards": m.get("failed_shards", {}),
        },
        "counts": counts,
        "shards": [{"shard_id": mk["shard_id"], "rows_selected": mk["tally"]["rows_selected"],
                    "rows_exported": mk["tally"]["rows_exported"], "items": mk["tally"]["items"]}
                   for mk in markers],
        "files": files,
    }
