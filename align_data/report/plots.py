"""The report's PNG plots (matplotlib, Agg backend): one function per figure, each returns its file name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from align_data.report.collect import CorpusStats, Histogram

SIZE = (7.0, 3.6)
DPI = 100
MAX_WER_ROWS = 40  # backends and voices in the WER plot


def _figure(size: tuple[float, float] = SIZE):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})  # no version stamp: same data, same bytes
    plt.close(fig)


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def _hist(ax, hist: Histogram, label: str | None = None, step: bool = False) -> None:
    widths = np.diff(hist.edges)
    counts = _drawn(hist)
    if step:
        ax.stairs(counts, hist.edges, label=label, linewidth=1.6)
    else:
        ax.bar(hist.edges[:-1], counts, width=widths, align="edge", label=label, alpha=0.85)


def _drawn(hist: Histogram) -> np.ndarray:
    """Bin counts as drawn: values outside the edges count in the first or last bin."""
    counts = hist.counts.astype(float).copy()
    counts[0] += hist.below
    counts[-1] += hist.above
    return counts


def _trim(ax, hists: list[Histogram]) -> None:
    """Zoom the x axis on the bins that hold data."""
    used = [h for h in hists if h.n]
    if not used:
        return
    edges = used[0].edges
    nonzero = np.flatnonzero(sum(_drawn(h) for h in used))
    lo, hi = edges[nonzero[0]], edges[nonzero[-1] + 1]
    pad = max((hi - lo) * 0.05, edges[1] - edges[0])
    ax.set_xlim(lo - pad, hi + pad)


def _single(path: Path, hist: Histogram, title: str, xlabel: str, empty: str) -> None:
    plt, fig, ax = _figure()
    if hist.n:
        _hist(ax, hist)
        _trim(ax, [hist])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
    else:
        _empty(ax, empty)
    ax.set_title(title)
    _save(plt, fig, path)


def _grouped(path: Path, hists: Mapping[str, Histogram], title: str, xlabel: str, empty: str) -> None:
    plt, fig, ax = _figure()
    present = {k: h for k, h in sorted(hists.items()) if h.n}
    if present:
        for key, hist in present.items():
            _hist(ax, hist, label=f"{key} (n={hist.n})", step=True)
        _trim(ax, list(present.values()))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        ax.legend(fontsize=8)
    else:
        _empty(ax, empty)
    ax.set_title(title)
    _save(plt, fig, path)


def _bars(path: Path, counts: Mapping[str, float], title: str, xlabel: str, empty: str,
          configured: Mapping[str, float] | None = None) -> None:
    plt, fig, ax = _figure()
    keys = sorted(set(counts) | set(configured or {}))
    if keys and sum(counts.values()):
        total = sum(counts.values())
        y = np.arange(len(keys))
        ax.barh(y, [counts.get(k, 0) / total for k in keys], height=0.4 if configured else 0.7,
                label="built", color="#4c72b0")
        if configured:
            ax.barh(y + 0.4, [configured.get(k, 0) for k in keys], height=0.4, label="configured", color="#bbb")
            ax.legend(fontsize=8)
        ax.set_yticks(y + (0.2 if configured else 0), keys, fontsize=8)
        ax.set_xlabel(xlabel)
    else:
        _empty(ax, empty)
    ax.set_title(title)
    _save(plt, fig, path)


def _counts(path: Path, counts: Mapping[str, int], title: str, empty: str) -> None:
    plt, fig, ax = _figure()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
    if items:
        y = np.arange(len(items))
        ax.barh(y, [v for _, v in items], color="#c44e52")
        ax.set_yticks(y, [k for k, _ in items], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("records")
    else:
        _empty(ax, empty)
    ax.set_title(title)
    _save(plt, fig, path)


def _wer(path: Path, stats: CorpusStats, empty: str) -> None:
    """Median (bar) and p90 (whisker) of the clip WER of every backend, then of each voice under it (the figure
    grows with the voices; past MAX_WER_ROWS only the backends are drawn)."""
    keys = [(f"  {voice.split(':', 1)[1]} (n={h.n})" if voice else f"{backend} (all, n={h.n})", h, voice is None)
            for backend, voice, h in stats.wer_groups()]
    if len(keys) > MAX_WER_ROWS:
        keys = [k for k in keys if k[2]]
    plt, fig, ax = _figure((SIZE[0], max(SIZE[1], 1.2 + 0.2 * len(keys))))
    if keys:
        y = np.arange(len(keys))
        medians = [h.quantile(0.5) for _, h, _ in keys]
        p90s = [h.quantile(0.9) for _, h, _ in keys]
        ax.barh(y, medians, color=["#4c72b0" if top else "#8fa9d6" for *_, top in keys], label="median")
        ax.hlines(y, medians, p90s, color="#333", linewidth=1.2, label="to p90")
        ax.plot(p90s, y, "|", color="#333", markersize=8)
        ax.set_yticks(y, [k for k, _, _ in keys], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("WER per clip")
        ax.legend(fontsize=8, loc="lower right")
    else:
        _empty(ax, empty)
    ax.set_title("Whisper round-trip WER by backend and voice")
    _save(plt, fig, path)


def _shards(path: Path, shards: list[dict]) -> None:
    plt, fig, ax = _figure()
    if shards:
        ids = [s["shard_id"] for s in shards]
        rows = np.array([s["rows"] for s in shards])
        errors = np.array([s["errors"] for s in shards])
        filtered = np.array([s["filtered"] for s in shards])
        ax.bar(ids, rows, label="rows", color="#4c72b0")
        ax.bar(ids, filtered, bottom=rows, label="filtered", color="#dd8452")
        ax.bar(ids, errors, bottom=rows + filtered, label="errors", color="#c44e52")
        ax.set_xlabel("shard")
        ax.set_ylabel("records")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        _empty(ax, "no complete shards")
    ax.set_title("Records per shard")
    _save(plt, fig, path)


def draw_all(folder: Path, stats: CorpusStats, manifest: dict, reasons: Mapping[str, int],
             configured_tasks: Mapping[str, float]) -> dict[str, str]:
    """Write every plot into ``folder``; returns {file name: caption} in page order."""
    folder.mkdir(parents=True, exist_ok=True)
    no_quality = "no quality column: the build ran without quality.enabled"
    plots: list[tuple[str, str, Callable[[Path], None]]] = [
        ("clip_duration.png", "Clip durations (every speech clip)",
         lambda p: _single(p, stats.clip_seconds, "Clip duration", "seconds", "no clips")),
        ("words_per_second.png", "Speaking rate (words per second of speech, per row)",
         lambda p: _single(p, stats.words_per_second, "Speaking rate", "words / second", "no measures")),
        ("f0_by_gender.png", "Mean f0 per row, by the voice's gender",
         lambda p: _grouped(p, stats.f0_by_gender, "f0 by gender", "Hz", "no f0 measured")),
        ("snr.png", f"SNR of rows mixed with noise ({stats.snr_missing} rows without noise have none)",
         lambda p: _single(p, stats.snr_db, "SNR", "dB", "no noise mixed (acoustics.noise_prob = 0)")),
        ("wer_by_backend.png", "Whisper round-trip WER per clip of the kept rows: median and p90 by TTS backend, "
                               "and by voice",
         lambda p: _wer(p, stats, no_quality)),
        ("target_length_by_task.png", "Target length in words, by target task",
         lambda p: _grouped(p, stats.target_words_by_task, "Target length by task", "words", "no targets")),
        ("task_mix.png", "Task mix: share of rows against the configured task weights",
         lambda p: _bars(p, dict(stats.tasks), "Task mix", "share of rows", "no rows", configured_tasks)),
        ("errors_filtered.png", "Error and filter reasons, all stages (stage/kind)",
         lambda p: _counts(p, reasons, "Errors and filtered by reason", "no errors, nothing filtered")),
        ("shard_rows.png", "Rows, filtered and error records per shard",
         lambda p: _shards(p, manifest.get("shards", []))),
    ]
    for name, _, draw in plots:
        draw(folder / name)
    return {name: caption for name, caption, _ in plots}
