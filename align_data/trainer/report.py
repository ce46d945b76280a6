"""The trainer's report beside a checkpoint: eval results as JSON, generated responses as JSONL, PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align_data.files import atomic_file
from align_data.trainer.checkpoint import LOG_FILE

REPORT_DIR = "report"
REPORT_FILE = "report.json"
GENERATIONS_FILE = "generations.jsonl"
PLOTS = {"train_curves": "train_curves.png", "eval_loss": "eval_loss.png", "eval_alignment": "eval_alignment.png"}


def read_train_log(path: Path) -> list[dict[str, Any]]:
    """The per-step lines of train_log.jsonl (empty when the file is missing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_summary(log: list[dict[str, Any]]) -> dict[str, Any]:
    """Steps, first and last loss (mean of up to 10 steps each), and mean seconds per step of a training log."""
    steps = [row for row in log if "loss" in row]
    if not steps:
        return {"steps": 0}
    window = max(1, min(10, len(steps) // 2))
    mean = lambda rows: sum(r["loss"] for r in rows) / len(rows)  # noqa: E731
    seconds = [r["seconds"] for r in steps if "seconds" in r]
    return {"steps": steps[-1]["step"], "first_loss": mean(steps[:window]), "last_loss": mean(steps[-window:]),
            "mean_window": window, "seconds_per_step": sum(seconds) / len(seconds) if seconds else None,
            "train_seconds": sum(seconds) if seconds else None}


def write_report(result: dict[str, Any], ckpt_dir: Path) -> dict[str, Path]:
    """Write ``CKPT/report/``: report.json (eval result + training summary), generations.jsonl and the plots."""
    out = Path(ckpt_dir) / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    log = read_train_log(Path(ckpt_dir) / LOG_FILE)
    paths = {name: out / file for name, file in PLOTS.items()}
    _plot_training(log, paths["train_curves"])
    _plot_losses(result, paths["eval_loss"])
    _plot_alignment(result, paths["eval_alignment"])
    generations = result.get("generations", [])
    with atomic_file(out / GENERATIONS_FILE) as fh:
        fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in generations).encode())
    body = {k: v for k, v in result.items() if k != "generations"}
    body["train"] = train_summary(log)
    body["files"] = {"generations": GENERATIONS_FILE, **{k: p.name for k, p in paths.items()}}
    with atomic_file(out / REPORT_FILE) as fh:
        fh.write(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False).encode())
    return {"report": out / REPORT_FILE, "generations": out / GENERATIONS_FILE, **paths}


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (7.0, 4.0)):
    """A figure on matplotlib's file-only Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_file(path) as fh:
        fig.savefig(fh, format="png")


def _plot_training(log: list[dict[str, Any]], path: Path) -> None:
    """Loss per step with a running mean, and the learning rate."""
    fig, axes = _figure(2, 1, (7.0, 5.5))
    loss_ax, lr_ax = axes[0][0], axes[1][0]
    rows = [r for r in log if "loss" in r]
    steps = [r["step"] for r in rows]
    if rows:
        losses = [r["loss"] for r in rows]
        window = max(1, min(20, len(losses) // 5))
        running = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                   for i in range(len(losses))]
        loss_ax.plot(steps, losses, color="tab:blue", alpha=0.35, label="loss per step")
        loss_ax.plot(steps, running, color="tab:blue", label=f"running mean ({window} steps)")
        loss_ax.legend(fontsize=8)
        lr_ax.plot(steps, [r.get("lr", float("nan")) for r in rows], color="tab:orange")
    else:
        loss_ax.text(0.5, 0.5, "no train_log.jsonl beside the checkpoint", ha="center", transform=loss_ax.transAxes)
    loss_ax.set(title="training loss (target tokens)", ylabel="loss")
    lr_ax.set(xlabel="step", ylabel="learning rate")
    _save(fig, path)


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str) -> None:
    """Grouped bars: one group per name in ``groups``, one bar per series (None draws nothing)."""
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=len(series), frameon=False)


def _plot_losses(result: dict[str, Any], path: Path) -> None:
    """Held-out target loss per split and per task: untrained adapters (mean), trained adapter, transcript input."""
    fig, axes = _figure(1, 2, (11.0, 4.5))
    for ax, (title, parts) in zip(axes[0], (("by split", result.get("splits", {})),
                                            ("by task", result.get("per_task", {})))):
        names = [n for n, p in parts.items() if p.get("tokens")]
        series = {"speech, untrained adapters (mean)": [parts[n].get("baseline_speech_loss") for n in names],
                  "speech": [parts[n]["speech_loss"] for n in names],
                  "transcript as text": [parts[n]["text_loss"] for n in names]}
        if not any(v is not None for v in series["speech, untrained adapters (mean)"]):
            del series["speech, untrained adapters (mean)"]
        _bars(ax, names, series, f"held-out loss {title} (step {result.get('step')})", "loss per target token")
    _save(fig, path)


def _plot_alignment(result: dict[str, Any], path: Path) -> None:
    """Similarity of the response to speech and the response to the transcript, per split (BLEU, chrF, cosine)."""
    fig, axes = _figure(1, 1, (8.0, 4.5))
    ax = axes[0][0]
    parts = {n: s["alignment"] for n, s in result.get("splits", {}).items() if s.get("alignment", {}).get("examples")}
    names = list(parts)
    pairs = [parts[n]["speech_vs_text"] for n in names]
    series = {"BLEU": [p["bleu"] for p in pairs], "chrF": [p["chrf"] for p in pairs],
              "cosine × 100": [p["cosine"] * 100 if p["cosine"] is not None else None for p in pairs]}
    if names:
        _bars(ax, names, series, "speech vs transcript responses (behaviour alignment)", "similarity (0-100)")
    else:
        ax.text(0.5, 0.5, "no responses generated", ha="center", transform=ax.transAxes)
    _save(fig, path)
