"""``align-data report``: stream the shards once, then write ``report/report.html`` and its PNG plots."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from align_data.errors import AlignDataError
from align_data.pipeline.summary import expected_voice_shares, load_manifest
from align_data.report import balance as balance_rules
from align_data.report.balance import Share, balance, task_shares
from align_data.report.collect import CorpusStats, collect
from align_data.report.page import render
from align_data.report.plots import draw_all
from align_data.report.samples import read_samples, render_samples
from align_data.report.summary import build_config, checks_note, filtered_by_attribute, reasons, repair_counts

REPORT_DIR = "report"
PAGE = "report.html"


@dataclass(slots=True)
class Report:
    """What ``write_report`` made and found: the page, the plots, the numbers behind the terminal summary."""

    page: Path
    plots: list[Path]
    samples: int
    stats: CorpusStats
    manifest: dict
    shares: list[Share]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        """A one-screen text summary for the terminal."""
        m, s = self.manifest, self.stats
        errors, filtered = reasons(m)
        totals = (f"{m['rows']} rows, {m['errors']} errors, {m['filtered']} filtered from {m['candidates']} "
                  f"segments; {m['audio_seconds'] / 3600:.3f} h audio in {s.clips} clips; {m['complete_shards']}/"
                  f"{m['planned_shards']} shards")
        lines = [totals,
                 "tasks: " + ", ".join(f"{k} {v}" for k, v in sorted(s.tasks.items())),
                 "clip s: " + _spread(s.clip_seconds) + "   words/s: " + _spread(s.words_per_second)]
        if s.rows_with_quality:
            wer = _merged_wer(s)
            lines.append(f"ASR WER per clip: {wer}   (quality column on {s.rows_with_quality} rows)")
            lines.append("WER by backend: " + ", ".join(
                f"{b} median {h.quantile(0.5):.2f} p90 {h.quantile(0.9):.2f} ({h.n} clips)"
                for b, h in sorted(s.wer_by_backend.items()) if h.n))
        else:
            lines.append("ASR: not run (quality.enabled = false)")
        lines.append("target checks: " + ", ".join(f"{k} {v}" for k, v in s.check_totals().items())
                     + f" (of {sum(s.targets_by_task.values())} targets)")
        unfaithful = {a: n for a, n, _, _ in faithfulness_rows(s, m) if n}
        lines.append(f"description faithfulness: {s.targets_by_task.get('description', 0)} kept, contradicting "
                     + (", ".join(f"{a} {n}" for a, n in unfaithful.items()) or "nothing"))
        repairs = repair_counts(m)
        if repairs:
            lines.append("repairs: " + ", ".join(f"{stage}/{key} {n}" for stage, key, n in repairs))
        lines.append("errors: " + (", ".join(f"{k} {v}" for k, v in errors.items()) or "none"))
        lines.append("filtered: " + (", ".join(f"{k} {v}" for k, v in filtered.items()) or "none"))
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines += [f"  ! {w}" for w in self.warnings[:8]]
            if len(self.warnings) > 8:
                lines.append(f"  ... {len(self.warnings) - 8} more in the report")
        else:
            lines.append("balance: every share within tolerance of the config")
        lines.append(f"report: {self.page} ({self.samples} rows to listen to, {len(self.plots)} plots, "
                     f"{self.seconds:.1f}s)")
        return lines


def _spread(hist) -> str:
    if not hist.n:
        return "n/a"
    return (f"median {hist.quantile(0.5):.2f} (p10 {hist.quantile(0.1):.2f}, p90 {hist.quantile(0.9):.2f}, "
            f"max {hist.high:.2f})")


def _merged_wer(stats: CorpusStats) -> str:
    hists = [h for h in stats.wer_by_backend.values() if h.n]
    if not hists:
        return "n/a"
    merged = type(hists[0])(hists[0].edges.copy())
    for h in hists:
        merged.counts += h.counts
        merged.below += h.below
        merged.above += h.above
        merged.n += h.n
        merged.total += h.total
        merged.high = max(merged.high, h.high)
    return f"mean {merged.mean:.3f}, " + _spread(merged)


def faithfulness_rows(stats: CorpusStats, manifest: dict) -> list[tuple[str, int, str, int]]:
    """Per attribute: kept description targets contradicting it, their share, records filtered for it."""
    from align_data.stages.quality.checks import UNFAITHFUL_ATTRIBUTES

    described = stats.targets_by_task.get("description", 0)
    filtered = filtered_by_attribute(manifest)
    return [(a, stats.unfaithful_by_attribute.get(a, 0),
             f"{100 * stats.unfaithful_by_attribute.get(a, 0) / described:.1f}%" if described else "n/a",
             filtered.get(a, 0)) for a in UNFAITHFUL_ATTRIBUTES]


def wer_rows(stats: CorpusStats) -> list[list[object]]:
    """(backend or voice, clips, median, p90, mean) of the clip WER: each backend, then its voices."""
    def row(name: str, hist) -> list[object]:
        return [name, hist.n, f"{hist.quantile(0.5):.2f}", f"{hist.quantile(0.9):.2f}", f"{hist.mean:.3f}"]

    return [row(f"  {voice}" if voice else f"{backend} (all)", hist) for backend, voice, hist in stats.wer_groups()]


def _warnings(manifest: dict, stats: CorpusStats, shares: list[Share]) -> list[str]:
    warnings = [f"{s.describe()} (off by more than {100 * balance_rules.RELATIVE_TOLERANCE:.0f}% relative)"
                for s in shares if s.off]
    if manifest.get("failed_shards"):
        warnings.append(f"{len(manifest['failed_shards'])} shard(s) failed: finish with `align-data build --resume`")
    if manifest["planned_shards"] != manifest["complete_shards"]:
        warnings.append(f"only {manifest['complete_shards']} of {manifest['planned_shards']} planned shards are complete")
    for check, n in stats.check_totals().items():
        if n:
            warnings.append(f"{n} target(s) fail the {check} check")
    return warnings


def write_report(out_dir: str | Path) -> Report:
    """Write ``OUT/report/report.html`` with its plots; the shards are read once, a batch at a time."""
    started = time.perf_counter()
    out = Path(out_dir)
    manifest = load_manifest(out)
    shard_ids = [s["shard_id"] for s in manifest["shards"]]
    stats = collect(out, shard_ids)
    config = build_config(out)
    configured_tasks = task_shares(config)
    shares = balance(stats.rows_by, stats.seconds_by, stats.tasks, expected_voice_shares(out), configured_tasks)
    warnings = _warnings(manifest, stats, shares)
    errors, filtered = reasons(manifest)

    folder = out / REPORT_DIR
    work = out / f".{REPORT_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        plots = draw_all(work, stats, manifest, errors | filtered, configured_tasks)
        samples = read_samples(out, stats.samples.choose(), work)
        totals = {"build": str(out), "rows": manifest["rows"], "errors": manifest["errors"],
                  "filtered": manifest["filtered"], "segments (candidates)": manifest["candidates"],
                  "documents": manifest["input_docs"], "audio hours": f"{manifest['audio_seconds'] / 3600:.3f}",
                  "clips": stats.clips, "shards": f"{manifest['complete_shards']} of {manifest['planned_shards']}",
                  "config hash": manifest["config_hash"], "schema": manifest["schema_version"]}
        quality_cfg = config.get("quality", {})
        quality = {"enabled": quality_cfg.get("enabled", False), "model": quality_cfg.get("model", "-"),
                   "WER threshold": quality_cfg.get("wer_threshold", "-"),
                   "rows with a quality column": stats.rows_with_quality,
                   "ASR model in rows": ", ".join(f"{k} ({v})" for k, v in sorted(stats.asr_models.items())) or "-",
                   "clip WER": _merged_wer(stats) if stats.rows_with_quality else "n/a",
                   "filtered as high_wer": manifest.get("stages", {}).get("quality", {}).get("filtered", {})
                   .get("high_wer", 0)}
        checks = {task: {"targets": n} | {c: stats.checks.get((task, c), 0) for c in stats.check_totals()}
                  for task, n in stats.targets_by_task.items()}
        page = render(f"align-data report: {out.name}", totals, warnings, shares, checks,
                      checks_note(quality_cfg.get("target_filters", [])), balance_rules.__doc__.strip(),
                      quality, plots, faithfulness_rows(stats, manifest), repair_counts(manifest),
                      render_samples(samples), wer_rows(stats))
        (work / PAGE).write_text(page, encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(work, folder)
    except OSError as exc:
        raise AlignDataError(f"cannot write the report into {folder}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Report(folder / PAGE, [folder / name for name in plots], len(samples), stats, manifest, shares, warnings,
                  round(time.perf_counter() - started, 2))
