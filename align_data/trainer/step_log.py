"""Per-step training metrics: train_log.jsonl always (resume and eval read it), TensorBoard events when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from align_data.errors import AlignDataError

TENSORBOARD_DIR = "tensorboard"
SCALARS = ("loss", "kl", "lr", "grad_norm", "examples_per_s", "tokens")


def check_sinks(sinks: list[str]) -> None:
    """Fail before any model loads when a requested sink's package is missing."""
    if "tensorboard" in sinks:
        try:
            import tensorboard  # noqa: F401
        except ImportError as exc:
            raise AlignDataError("metrics includes 'tensorboard' but the `tensorboard` package is not installed: "
                                 "pip install tensorboard (or drop it from metrics)") from exc


class StepLog:
    """Appends one JSON line per step to ``log_path`` and mirrors the scalars to TensorBoard in
    ``OUT/tensorboard`` when ``sinks`` names it (events after ``start_step`` from a crashed run are purged);
    ``enabled`` False (a non-main training process) writes nothing."""

    def __init__(self, log_path: Path, sinks: list[str], start_step: int, *, enabled: bool = True) -> None:
        check_sinks(sinks)
        self.file = open(log_path, "a", encoding="utf-8") if enabled else None
        self.board = None
        if "tensorboard" in sinks and enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(log_path.parent / TENSORBOARD_DIR), purge_step=start_step + 1)

    def write(self, line: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        if self.board is not None:
            for name in SCALARS:
                if line.get(name) is not None:
                    self.board.add_scalar(f"train/{name}", line[name], line["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
