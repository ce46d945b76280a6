"""A build into a local folder vs into an S3-compatible store (moto's S3 server on localhost), same config.

Prints seconds for build, --resume of the finished build, and validate, each with its store/local ratio, and the
store's --resume with the driver checking one shard at a time vs SHARD_IO_THREADS at once, through a proxy that
delays every request by --latency-ms (a stand-in for a remote store's round trip; moto on localhost has none).
The source is read from the store in both builds, so only the output side differs. moto is a Python server on
this machine: the ratios show the per-request cost of the store path, not a real store's network latency.
    .venv/bin/python benchmarks/bench_store.py [--docs 24] [--docs-per-shard 4]   (--docs 240 --docs-per-shard 2:
    120 shards, where the resume check shows)
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _corpus(docs: int) -> str:
    lines = [l for l in (ROOT / "examples/demo_corpus.txt").read_text().splitlines() if len(l.split()) > 8]
    return "\n\n".join(lines[i % len(lines)] for i in range(docs))


def _delaying_proxy(port: int, delay: float) -> int:
    """A TCP proxy to 127.0.0.1:``port`` on a thread that holds each client chunk ``delay`` s; returns its port."""
    import asyncio
    import threading

    async def pipe(src, dst, wait: float) -> None:
        try:
            while data := await src.read(1 << 16):
                if wait:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    async def handle(reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, 0.0), return_exceptions=True)

    ready: list[int] = []
    started = threading.Event()

    def serve() -> None:
        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            ready.append(server.sockets[0].getsockname()[1])
            started.set()
            await server.serve_forever()
        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    started.wait(10)
    return ready[0]


def _timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--docs-per-shard", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="round trip the proxy adds per request")
    args = parser.parse_args()

    from tests.fakes.openai_server import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    # moto in its own process: in this one it would share the GIL with the build and serialise every request
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
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
    import align_data.pipeline.build as build_module

    far = config.model_copy(update={"storage": config.storage.model_copy(update={"options": {"s3": {
        "endpoint_url": f"http://127.0.0.1:{_delaying_proxy(port, args.latency_ms / 1000)}"}}})})
    pool = build_module.SHARD_IO_THREADS
    build_module.SHARD_IO_THREADS = 1
    _, serial = _timed(lambda: build(far, "s3://bench/out", resume=True))
    build_module.SHARD_IO_THREADS = pool
    _, threaded = _timed(lambda: build(far, "s3://bench/out", resume=True))
    server.terminate()
    server.wait()
    m = summary.manifest
    print(f"{args.docs} documents, {summary.planned} shards, {m['rows']} rows, {m['audio_seconds']:.1f} s audio")
    for step in seconds["local"]:
        local, store = seconds["local"][step], seconds["store"][step]
        print(f"{step:18s} local {local:6.2f} s   store {store:6.2f} s   store/local {store / local:6.1f}")
    print(f"store --resume (all done), {args.latency_ms:g} ms per request: one shard at a time {serial:.2f} s, "
          f"{pool} at once {threaded:.2f} s, {serial / threaded:.1f}x faster")


if __name__ == "__main__":
    main()
