"""Balance of a build against its config: voices, backends, genders (rows and audio seconds) and tasks (rows).

A share is **off** when it misses the configured share by more than 10 % of that share (relative: a voice
configured at 20 % is off below 18 % or above 22 %) *and* by more than two standard errors of a share drawn
from that many rows, ``2 * sqrt(p * (1 - p) / n)``, so a small build is not flagged for sampling noise alone.
Something present that the config does not name (p = 0), or configured but absent from a build of 20+ rows,
is always off.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

RELATIVE_TOLERANCE = 0.10
NOISE_SIGMAS = 2.0
MIN_ROWS_FOR_ABSENT = 20


@dataclass(frozen=True, slots=True)
class Share:
    """One key of one group: its observed and configured share and whether it is off."""

    group: str  # "voices", "backends", "genders", "tasks"
    measure: str  # "rows" or "audio seconds"
    key: str
    observed: float
    configured: float
    count: float
    off: bool

    def describe(self) -> str:
        return (f"{self.group[:-1]} {self.key}: {100 * self.observed:.1f}% of {self.measure}, configured "
                f"{100 * self.configured:.1f}%")


def is_off(observed: float, configured: float, rows: int) -> bool:
    """The rule in the module docstring."""
    if configured <= 0:
        return observed > 0
    if observed == 0 and rows >= MIN_ROWS_FOR_ABSENT:
        return True
    gap = abs(observed - configured)
    noise = NOISE_SIGMAS * math.sqrt(configured * (1 - configured) / max(rows, 1))
    return gap > RELATIVE_TOLERANCE * configured and gap > noise


def compare(group: str, measure: str, counts: Mapping[str, float], configured: Mapping[str, float],
            rows: int) -> list[Share]:
    """Every key of ``counts`` or ``configured``, sorted, with its shares."""
    total = sum(counts.values())
    shares = []
    for key in sorted(set(counts) | set(configured)):
        observed = counts.get(key, 0) / total if total else 0.0
        expected = configured.get(key, 0.0)
        shares.append(Share(group, measure, key, observed, expected, counts.get(key, 0),
                            total > 0 and is_off(observed, expected, rows)))
    return shares


def task_shares(config: dict) -> dict[str, float]:
    """Configured task shares from a build's config.json (``interleave.task_weights``, normalized)."""
    weights = config.get("interleave", {}).get("task_weights", {})
    total = sum(weights.values()) or 1.0
    return {task: w / total for task, w in weights.items() if w > 0}


def balance(rows_by: Mapping[str, Counter], seconds_by: Mapping[str, Counter], tasks: Counter,
            expected: Mapping[str, Mapping[str, float]], configured_tasks: Mapping[str, float]) -> list[Share]:
    """All shares of a build: each voice group by rows and by audio seconds, tasks by rows."""
    from align_data.pipeline.summary import fold_wildcard_voices

    rows = sum(tasks.values())
    shares: list[Share] = []
    for group in ("voices", "backends", "genders"):
        configured = expected.get(group, {})
        if not configured:
            continue
        by_rows, by_seconds = rows_by.get(group, Counter()), seconds_by.get(group, Counter())
        if group == "voices":
            by_rows, by_seconds = (fold_wildcard_voices(by_rows, configured),
                                   fold_wildcard_voices(by_seconds, configured))
        shares += compare(group, "rows", by_rows, configured, rows)
        shares += compare(group, "audio seconds", by_seconds, configured, rows)
    if configured_tasks:
        shares += compare("tasks", "rows", tasks, configured_tasks, rows)
    return shares
