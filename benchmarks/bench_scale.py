"""Scale: runner layouts, worker scaling, end-to-end vs the slowest stage, and memory vs corpus size.

One run, ratios printed against baselines measured in the same run:
  1. the same LLM-free job (interleaved rows) with the local loop, Ray fused with 1 and 2 actors, and Ray
     split (speech pool + LLM pool): rows/s and ratios ray/local, 2 vs 1 actors, split/fused;
  2. end-to-end rows/s vs the slowest stage alone (its own seconds for the same shards, from the sidecars),
     for the LLM-free job and for a job with LLM targets (the default mix; --llm-docs 0 skips it);
  3. peak RSS of the driver (Ray runner) and of a worker process (local runner, which is driver + stages)
     for N and 10×N documents: growth must stay small (no per-row state).
    .venv/bin/python benchmarks/bench_scale.py [--docs 12] [--llm-docs 4] [--mem-docs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERLEAVED = "interleave.task_weights={ interleaved = 1.0 }"


def _build(tmp: Path, name: str, overrides: list[str], runner: str, limit: int, corpus: Path | None = None) -> dict:
    from align_data.config import load_build_config
    from align_data.pipeline.build import build

    extra = [f"sources.0.path={json.dumps(str(corpus))}"] if corpus else []
    cfg = load_build_config(ROOT / "configs/demo.toml", overrides + extra)
    t0 = time.perf_counter()
    summary = build(cfg, tmp / name, runner=runner, limit=limit)
    wall = time.perf_counter() - t0
    if runner == "ray":
        import ray

        ray.shutdown()
    m = summary.manifest
    return {"wall": wall, "rows": m["rows"], "stages": m["stage_seconds"]}


def _corpus(tmp: Path, docs: int) -> Path:
    """The demo corpus repeated until it has ``docs`` documents (duplicates are filtered per shard only)."""
    corpus = tmp / f"corpus{docs}.txt"
    text = (ROOT / "examples/demo_corpus.txt").read_text().strip()
    corpus.write_text("\n\n".join([text] * (docs // 40 + 1)) + "\n")
    return corpus


def layouts(tmp: Path, docs: int) -> None:
    runs = {
        "local": ([INTERLEAVED], "local"),
        "ray fused x1": ([INTERLEAVED, "runner.num_workers=1"], "ray"),
        "ray fused x2": ([INTERLEAVED, "runner.num_workers=2"], "ray"),
        "ray split 1+1": ([INTERLEAVED, 'runner.layout="split"'], "ray"),
    }
    corpus = _corpus(tmp, docs)
    results = {name: _build(tmp, name.replace(" ", "_"), o, r, docs, corpus) for name, (o, r) in runs.items()}
    for name, r in results.items():
        print(f"  {name:14s} {r['wall']:6.1f}s wall  {r['rows']:4d} rows  {r['rows'] / r['wall']:.2f} rows/s")
    rate = {k: v["rows"] / v["wall"] for k, v in results.items()}
    print(f"  ray fused x1 / local      {rate['ray fused x1'] / rate['local']:.2f}   (goal >= 0.9)")
    print(f"  ray fused x2 / local      {rate['ray fused x2'] / rate['local']:.2f}")
    print(f"  2 actors / 1 actor        {rate['ray fused x2'] / rate['ray fused x1']:.2f}   (2 cores)")
    print(f"  split / fused (1 actor)   {rate['ray split 1+1'] / rate['ray fused x1']:.2f}")
    e2e_vs_slowest("LLM-free job, local", results["local"])


def e2e_vs_slowest(label: str, r: dict) -> None:
    stage, seconds = max(r["stages"].items(), key=lambda kv: kv[1])
    print(f"  {label}: end-to-end {r['rows'] / r['wall']:.2f} rows/s vs {stage} alone "
          f"{r['rows'] / seconds:.2f} rows/s -> ratio {seconds / r['wall']:.2f}")


def peak_rss(tmp: Path, docs: int, runner: str, corpus: Path) -> float:
    """Peak RSS (MB) of a fresh process that runs one build (the driver; with 'local' also the stages)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's peak
    code = ("import sys; sys.path.insert(0, %r); from benchmarks.bench_scale import _build; "
            "from pathlib import Path; _build(Path(%r), %r, [%r], %r, %d, Path(%r)); "
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)"
            % (str(ROOT), str(tmp), f"mem_{runner}_{docs}", INTERLEAVED, runner, docs, str(corpus)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def memory(tmp: Path, docs: int) -> None:
    corpus = _corpus(tmp, 10 * docs)
    for runner, role in (("local", "worker (local runner)"), ("ray", "driver (Ray runner)")):
        small, large = peak_rss(tmp, docs, runner, corpus), peak_rss(tmp, 10 * docs, runner, corpus)
        print(f"  {role:22s} {docs:3d} docs {small:6.0f} MB, {10 * docs:3d} docs {large:6.0f} MB "
              f"-> growth {100 * (large / small - 1):+.0f}%   (goal <= 20%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=120, help="documents for the layout comparison (0: skip)")
    parser.add_argument("--llm-docs", type=int, default=4, help="documents for the job with LLM targets (0: skip)")
    parser.add_argument("--mem-docs", type=int, default=6, help="N for the memory comparison, also run with 10×N (0: skip)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.docs:
            print(f"layouts ({args.docs} documents, interleaved rows only):")
            layouts(tmp, args.docs)
        if args.llm_docs:
            print(f"with LLM targets ({args.llm_docs} documents, the demo's task mix):")
            e2e_vs_slowest("default mix, local", _build(tmp, "llm", ["llm.max_new_tokens=24"], "local", args.llm_docs))
        if args.mem_docs:
            print("peak RSS vs corpus size:")
            memory(tmp, args.mem_docs)


if __name__ == "__main__":
    main()
