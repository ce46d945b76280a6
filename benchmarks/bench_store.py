"""A build into a local folder vs into an S3-compatible store (moto's S3 server on localhost), same config.

Prints seconds for build, --resume of the finished build, and validate, each with its store/local ratio.
The source is read from the store in both builds, so only the output side differs. moto is a Python server on
this machine: the ratios show the per-request cost of the store path, not a real store's network latency.
    .venv/bin/python benchmarks/bench_store.py [--docs 24] [--docs-per-shard 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _corpus(docs: int) -> str:
    lines = [l for l in (ROOT / "examples/demo_corpus.txt").read_text().splitlines() if len(l.split()) > 8]
    return "\n\n".join(lines[i % len(lines)] for i in range(docs))


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--docs-per-shard", type=int, default=4)
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    import s3fs

    from align_data.config import build_config_from_dict
    from align_data.pipeline.build import build
    from align_data.pipeline.validate import validate_build

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("bench")
    fs.pipe_file("bench/in/corpus.txt", _corpus(args.docs).encode())
    config = build_config_from_dict({
        "seed": 0, "sources": [{"name": "bench", "path": "s3://bench/in/corpus.txt", "format": "txt"}],
        "segment": {"min_words": 4, "max_words": 14}, "interleave": {"task_weights": {"interleaved": 1.0}},
        "shards": {"docs_per_shard": args.docs_per_shard}, "runner": {"kind": "local"}})
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    build(config, tmp / "warm-up")  # the datasets cache, espeak-ng and librosa's JIT, outside the timings
    seconds: dict[str, dict[str, float]] = {}
    for name, out in (("local", str(tmp / "out")), ("store", "s3://bench/out")):
        summary, built = _timed(lambda: build(config, out))
        again, resumed = _timed(lambda: build(config, out, resume=True))
        problems, checked = _timed(lambda: validate_build(out))
        assert again.skipped == summary.planned and problems == [], problems
        seconds[name] = {"build": built, "resume (all done)": resumed, "validate": checked}
    server.stop()
    m = summary.manifest
    print(f"{args.docs} documents, {summary.planned} shards, {m['rows']} rows, {m['audio_seconds']:.1f} s audio")
    for step in seconds["local"]:
        local, store = seconds["local"][step], seconds["store"][step]
        print(f"{step:18s} local {local:6.2f} s   store {store:6.2f} s   store/local {store / local:6.1f}")


if __name__ == "__main__":
    main()
