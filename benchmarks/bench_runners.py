"""Runner overhead: the same LLM-free build (interleaved rows only) with the local loop and with Ray.

Prints wall seconds, rows/s and the Ray/local ratio measured in this run.
    .venv/bin/python benchmarks/bench_runners.py [--limit DOCS]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from align_data.config import load_build_config
from align_data.pipeline.build import build

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=16, help="source documents to build")
    args = parser.parse_args()
    cfg = load_build_config(ROOT / "configs/demo.toml", ["interleave.task_weights={ interleaved = 1.0 }"])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runner in ("local", "ray"):
            t0 = time.perf_counter()
            summary = build(cfg, Path(tmp) / runner, runner=runner, limit=args.limit)
            seconds = time.perf_counter() - t0
            results[runner] = (seconds, summary.manifest["rows"], summary.manifest["stage_seconds"])
        same = all((Path(tmp) / "local/shards" / p.name).read_bytes() == p.read_bytes()
                   for p in (Path(tmp) / "ray/shards").glob("*.parquet"))
    for runner, (seconds, rows, stages) in results.items():
        per_stage = ", ".join(f"{k}={v:.1f}s" for k, v in stages.items())
        print(f"{runner:5s}: {seconds:6.1f}s wall, {rows} rows, {rows / seconds:.2f} rows/s  ({per_stage})")
    print(f"ray/local wall ratio: {results['ray'][0] / results['local'][0]:.2f}  (identical parquet: {same})")


if __name__ == "__main__":
    main()
