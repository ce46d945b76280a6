"""Corpus-scale sources: a build of 64 documents costs the same from a 10 MB corpus and from a 2 GB one.

Generates corpora of two sizes (default 10 MB and 2 GB, the large one over 5 M documents) as txt (paragraphs),
jsonl and a multi-file Parquet set (4 and 200 files, uncompressed so their size on disk is the corpus size), then
for each runs ``build --limit 64`` (local runner, LLM-free: interleaved rows, espeak-ng) in a child process with a
fresh HF cache and temp folder, and prints wall time, peak RSS, the ratios large/small, and the sizes of the cache,
temp and output folders afterwards (after one untimed warm-up build). Last, the time to plan the whole 200-file Parquet set (footers only) and the
whole large txt/jsonl files (by size).

    .venv/bin/python benchmarks/bench_sources.py [--dir /tmp/bench-sources] [--small-mb 10] [--large-mb 2048]
    [--keep]   (the corpora are deleted at the end unless --keep)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a river town morning people light stone window market garden winter summer quiet harbour "
         "road field bridge evening child letter music paper school village forest mountain table story "
         "bread water fire friend train station city night bell wind rain cloud ship sea island sun").split()
DOC_WORDS = 60  # about 400 bytes a document: 2 GB is over 5 M documents
LIMIT = 64


def _documents(count: int, first: int) -> list[str]:
    """Documents ``first`` .. ``first + count - 1``: random words (seeded by ``first``), each numbered."""
    rng = np.random.default_rng(first)
    picks = rng.integers(0, len(WORDS), size=(count, DOC_WORDS))
    docs = []
    for i, row in enumerate(picks):
        words = [WORDS[j] for j in row]
        docs.append(f"Document {first + i} begins here. " + " ".join(words[:30]) + ". " + " ".join(words[30:]) + ".")
    return docs


def _generate(folder: Path, megabytes: int, parquet_files: int) -> dict[str, Path]:
    """txt, jsonl and Parquet corpora of about ``megabytes`` each (the same documents)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    txt, jsonl, pq_dir = folder / "corpus.txt", folder / "corpus.jsonl", folder / "parquet"
    marker = folder / f"complete-{megabytes}-{parquet_files}"
    if marker.exists():  # made by an earlier run with --keep
        return {"txt": txt, "jsonl": jsonl, "parquet": pq_dir}
    pq_dir.mkdir(exist_ok=True)
    per_doc = len(("\n\n".join(_documents(1000, 0)) + "\n\n").encode()) / 1000
    total = max(1, int((megabytes << 20) / per_doc))  # documents for the size asked
    per_file = -(-total // parquet_files)
    block, done, part, batch = 20_000, 0, 0, []
    with open(txt, "w") as t, open(jsonl, "w") as j:
        while done < total:
            docs = _documents(min(block, total - done), done)
            t.write("\n\n".join(docs) + "\n\n")
            j.write("".join(json.dumps({"text": d, "id": f"{done + i}"}) + "\n" for i, d in enumerate(docs)))
            done += len(docs)
            batch += docs
            while len(batch) >= per_file:
                pq.write_table(pa.table({"text": batch[:per_file]}), pq_dir / f"part-{part:05d}.parquet",
                               compression="none", row_group_size=5000)
                batch, part = batch[per_file:], part + 1
    if batch:
        pq.write_table(pa.table({"text": batch}), pq_dir / f"part-{part:05d}.parquet", compression="none",
                       row_group_size=5000)
    marker.touch()
    return {"txt": txt, "jsonl": jsonl, "parquet": pq_dir}


def _source(kind: str, path: Path) -> dict:
    if kind == "parquet":
        return {"name": "bench", "path": str(path / "*.parquet"), "format": "parquet"}
    return {"name": "bench", "path": str(path), "format": kind, "txt_unit": "paragraph"}


def _config(kind: str, path: Path) -> dict:
    from align_data.config import espeak_voices

    return {"seed": 0, "sources": [_source(kind, path)], "segment": {"min_words": 6, "max_words": 28},
            "interleave": {"task_weights": {"interleaved": 1.0}}, "shards": {"docs_per_shard": 8},
            "runner": {"kind": "local"}, "tts": {"voices": [v.model_dump() for v in espeak_voices()]}}


def _child(config_json: str, out: str) -> None:
    """Run one build here and print its wall time and this process's peak RSS."""
    from align_data.config import build_config_from_dict
    from align_data.pipeline.build import build

    cfg = build_config_from_dict(json.loads(config_json))
    t0 = time.perf_counter()
    summary = build(cfg, out, runner="local", limit=LIMIT)
    wall = time.perf_counter() - t0
    m = summary.manifest
    print(json.dumps({"wall_s": round(wall, 2), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      / 1024, "rows": m["rows"], "docs": m["input_docs"], "shards": m["planned_shards"]}))


def _du(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run_build(work: Path, name: str, kind: str, corpus: Path) -> dict:
    home = work / f"run-{name}"
    shutil.rmtree(home, ignore_errors=True)
    (home / "tmp").mkdir(parents=True)
    env = dict(os.environ, HF_HOME=str(home / "hf"), HF_DATASETS_CACHE=str(home / "hf/datasets"),
               TMPDIR=str(home / "tmp"), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--child", json.dumps(_config(kind, corpus)), str(home / "out")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name}: build failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result |= {"hf_cache_bytes": _du(home / "hf"), "tmp_bytes": _du(home / "tmp"), "out_bytes": _du(home / "out")}
    return result


def _plan_time(kind: str, corpus: Path, docs_per_shard: int = 8) -> tuple[float, int]:
    from align_data.config import build_config_from_dict
    from align_data.pipeline.plan import plan_shards

    cfg = build_config_from_dict(_config(kind, corpus) | {"shards": {"docs_per_shard": docs_per_shard}})
    t0 = time.perf_counter()
    specs = plan_shards(cfg)
    return time.perf_counter() - t0, len(specs)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-sources"))
    parser.add_argument("--small-mb", type=int, default=10)
    parser.add_argument("--large-mb", type=int, default=2048)
    parser.add_argument("--keep", action="store_true", help="Keep the generated corpora.")
    args = parser.parse_args()
    sizes = {"small": (args.small_mb, 4), "large": (args.large_mb, 200)}
    corpora = {}
    for label, (mb, files) in sizes.items():
        t0 = time.perf_counter()
        corpora[label] = _generate(args.dir / label, mb, files)
        count = sum(1 for _ in open(corpora[label]["jsonl"], "rb"))
        n_files = len(list(corpora[label]["parquet"].glob("*.parquet")))
        print(f"{label}: {mb} MB as txt, jsonl and {n_files} Parquet files, {count:,} documents, generated in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    _run_build(args.dir, "warm-up", "txt", corpora["small"]["txt"])  # first run: page cache, numba's JIT cache
    results = {}
    for kind in ("txt", "jsonl", "parquet"):
        for label in sizes:
            r = results[(kind, label)] = _run_build(args.dir, f"{kind}-{label}", kind, corpora[label][kind])
            print(f"  build --limit {LIMIT} {kind:8s} {label:5s}: {r['wall_s']:7.1f} s wall, peak RSS "
                  f"{r['peak_rss_mb']:6.0f} MiB, {r['rows']} rows from {r['docs']} documents in {r['shards']} "
                  f"shards; afterwards HF cache {r['hf_cache_bytes']:,} B, temp {r['tmp_bytes']:,} B, "
                  f"output {r['out_bytes']:,} B", flush=True)
    print("ratios large / small (the issue's bound: within 1.2x):")
    for kind in ("txt", "jsonl", "parquet"):
        small, large = results[(kind, "small")], results[(kind, "large")]
        print(f"  {kind:8s} wall {large['wall_s'] / small['wall_s']:.2f}x, peak RSS "
              f"{large['peak_rss_mb'] / small['peak_rss_mb']:.2f}x, output {large['out_bytes'] / small['out_bytes']:.2f}x")
    print("planning the whole large corpus (no limit, no build):")
    for kind in ("parquet", "txt", "jsonl"):
        seconds, shards = _plan_time(kind, corpora["large"][kind])
        what = "200 Parquet files (footers)" if kind == "parquet" else f"the {kind} file (by size)"
        print(f"  {what}: {seconds:.2f} s, {shards:,} shards", flush=True)
        seconds, shards = _plan_time(kind, corpora["large"][kind], 5000)
        print(f"    the same with docs_per_shard = 5000: {seconds:.2f} s, {shards:,} shards", flush=True)
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
