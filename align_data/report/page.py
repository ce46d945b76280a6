"""The report page: one static HTML file (no scripts, no network) with its PNG plots and sample audio beside it.

Order: what a researcher checks first (listen to rows of every voice, with their input, measures and target), then
the summary and warnings, the plots, and the long tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape

from align_data.report.balance import Share

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1500px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.warn { color: #a40000; font-weight: 600; } .ok { color: #2a7a2a; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid #eee; padding: 6px; }
figure img { width: 700px; height: auto; display: block; }
figcaption { font-size: 12px; color: #555; max-width: 700px; }
.note { font-size: 12px; color: #555; max-width: 1000px; }
table.samples td, table.samples th { text-align: left; vertical-align: top; }
table.samples td.input { max-width: 520px; }
table.samples td.attrs { font-size: 12px; color: #333; white-space: nowrap; }
.speech { background: #e8f0fb; border-left: 3px solid #4c72b0; padding: 2px 4px; display: inline-block;
  margin: 2px 0; }
.text { color: #222; } .prompt { color: #555; font-style: italic; } .target { margin-bottom: 4px; }
audio { height: 30px; width: 260px; vertical-align: middle; }
"""


def _plain(text: str) -> str:
    """Docstring text for the page: no reStructuredText markup, one paragraph."""
    return " ".join(text.replace("``", "").replace("**", "").split())


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], classes: Sequence[str | None] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = classes[i] if i < len(classes) and classes[i] else None
        attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render(title: str, totals: Mapping[str, object], warnings: Sequence[str], shares: Sequence[Share],
           checks: Mapping[str, Mapping[str, int]], check_notes: str, balance_notes: str,
           quality: Mapping[str, object], plots: Mapping[str, str],
           faithfulness: Sequence[Sequence[object]] = (), repairs: Sequence[Sequence[object]] = (),
           samples: str = "", wer: Sequence[Sequence[object]] = ()) -> str:
    """The whole page. ``checks`` is {target task: {check: count}} with a 'targets' count per task;
    ``faithfulness`` rows (attribute, kept descriptions contradicting it, share, records filtered for it);
    ``repairs`` rows (stage, counter, count); ``samples`` the listening table's HTML; ``wer`` rows (backend or
    voice, clips, median, p90, mean)."""
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>")
    parts = [head, f"<h1>{escape(title)}</h1>"]
    parts.append("<h2>Listen: rows of every voice</h2>")
    parts.append("<p class='note'>The first rows of each voice in shard order, of different tasks; speech spans "
                 "(blue) play the clip as stored in the corpus (16 kHz FLAC, in audio/ beside this page); the "
                 "attributes are what the pipeline measured on that audio, and the target is what the row trains "
                 "on.</p>")
    parts.append(samples or "<p>no rows</p>")
    parts.append("<h2>Summary</h2>")
    parts.append(_table(["", ""], totals.items()))
    parts.append("<h2>Warnings</h2>")
    if warnings:
        parts.append("<ul>" + "".join(f"<li class='warn'>{escape(w)}</li>" for w in warnings) + "</ul>")
    else:
        parts.append("<p class='ok'>none</p>")
    parts.append("<h2>Plots</h2><div class='grid'>")
    for name, caption in plots.items():
        parts.append(f"<figure><img src='{escape(name)}' alt='{escape(caption)}'>"
                     f"<figcaption>{escape(caption)}</figcaption></figure>")
    parts.append("</div>")
    parts.append("<h2>ASR round trip</h2>")
    parts.append(_table(["", ""], quality.items()))
    if wer:
        parts.append(_table(["backend / voice", "clips", "median WER", "p90", "mean"], wer))
    parts.append("<h2>Target checks</h2>")
    check_names = list(dict.fromkeys(c for counts in checks.values() for c in counts if c != "targets"))
    parts.append(_table(["target task", "targets", *check_names],
                        [[task, counts.get("targets", 0), *(counts.get(c, 0) for c in check_names)]
                         for task, counts in sorted(checks.items())]))
    parts.append(f"<p class='note'>{escape(_plain(check_notes))}</p>")
    parts.append("<h2>Description faithfulness</h2>")
    parts.append(_table(["attribute", "kept descriptions contradicting it", "share", "records filtered for it"],
                        faithfulness, ["warn" if row[1] else None for row in faithfulness]))
    parts.append("<p class='note'>A description contradicts an attribute when it says something about the speaker "
                 "or the recording that the clip's voice and measures deny (a wrong gender, accent, pitch, speed or "
                 "volume word, noise or echo that is not there, a far-off duration, another emotion); content: it "
                 "repeats words of a few-shot example it was shown that the clip does not say. People named in the "
                 "transcript are not the speaker. Filtered records were repaired first.</p>")
    parts.append("<h2>Repairs</h2>")
    parts.append(_table(["stage", "counter", "count"], repairs) if repairs else "<p>none</p>")
    parts.append("<p class='note'>repairs:CHECK: answers asked again (or clips spoken again by another voice, "
                 "high_wer) because they failed CHECK; repair_calls: the extra LLM prompts; repaired: records a "
                 "repair saved; repairs_exhausted: records still failing after quality.max_repairs, then "
                 "filtered.</p>")
    parts.append("<h2>Balance against the config</h2>")
    parts.append(f"<p class='note'>{escape(_plain(balance_notes))}</p>")
    parts.append(_table(["group", "measure", "key", "count", "observed", "configured", "status"],
                        [[s.group, s.measure, s.key, f"{s.count:.0f}" if s.measure == "rows" else f"{s.count:.1f} s",
                          f"{100 * s.observed:.1f}%", f"{100 * s.configured:.1f}%", "OFF" if s.off else "ok"]
                         for s in shares],
                        ["warn" if s.off else None for s in shares]))
    parts.append("</body></html>\n")
    return "\n".join(parts)
