"""A real multi-process Ray cluster on this machine: pools placed by resources, a node killed mid-build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align_data.errors import AlignDataError
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from tests.conftest import TINY_CORPUS, make_config
from tests.fakes.openai_server import free_port

pytestmark = pytest.mark.ray
RAY = str(Path(sys.executable).with_name("ray"))
ENV = dict(os.environ, RAY_AUTH_MODE="disabled")
COMMON = ["--disable-usage-stats", "--object-store-memory=200000000"]


def _same_data(a: Path, b: Path) -> None:
    names = sorted(str(p.relative_to(a)) for d in ("shards", "errors", "filtered") for p in (a / d).iterdir()
                   if not p.name.endswith(".json"))
    assert names and names == sorted(str(p.relative_to(b)) for d in ("shards", "errors", "filtered")
                                     for p in (b / d).iterdir() if not p.name.endswith(".json"))
    for rel in names:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture
def cluster():
    """Start a head and worker nodes as separate processes; stop everything afterwards."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    blocking: list[subprocess.Popen] = []

    def start(head_args: list[str], *workers: tuple[list[str], bool]) -> str:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *COMMON,
                        *head_args], check=True, env=ENV, capture_output=True)
        for args, block in workers:
            cmd = [RAY, "start", f"--address=127.0.0.1:{port}", *COMMON, *args]
            if block:  # a node we can kill: `ray start --block` keeps its processes in our process group
                blocking.append(subprocess.Popen(cmd + ["--block"], env=ENV, start_new_session=True,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            else:
                subprocess.run(cmd, check=True, env=ENV, capture_output=True)
        address = f"127.0.0.1:{port}"
        ray.init(address=address, log_to_driver=False)
        deadline = time.time() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 1 + len(workers):
            assert time.time() < deadline, "worker nodes did not join"
            time.sleep(0.5)
        return address

    start.blocking = blocking
    try:
        yield start
    finally:
        ray.shutdown()
        for proc in blocking:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True)


def test_split_pools_are_placed_by_their_resources(tmp_path, corpus_file, cluster):
    address = cluster(["--num-cpus=1", '--resources={"tts": 1}'], (["--num-cpus=1", "--num-gpus=1"], False))
    import ray

    head = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("tts"))
    gpu_node = next(n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU"))
    cfg = make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}}, shards={"docs_per_shard": 1},
                      runner={"kind": "ray", "ray_address": address, "layout": "split",
                              "speech": {"num_cpus": 1, "resources": {"tts": 1}},
                              "llm": {"num_cpus": 1, "num_gpus": 1}})
    split = build(cfg, tmp_path / "split")
    assert split.written == 3 and not split.failed
    from ray._private.state import actors  # the GCS actor table (the state API needs the dashboard)

    ours = [a for a in actors().values() if (a.get("Name") or "").startswith("align-data-")]
    placed = {a["Name"].split("-")[2]: a["Address"]["NodeID"] for a in ours}
    assert placed == {"speech": head, "llm": gpu_node}  # TTS on the tts node, the LLM on the GPU node
    build(cfg, tmp_path / "local", runner="local")
    _same_data(tmp_path / "local", tmp_path / "split")
    assert validate_build(tmp_path / "split") == []


def test_a_pool_no_node_can_hold_fails_at_once(tmp_path, corpus_file, cluster):
    address = cluster(["--num-cpus=1"])
    cfg = make_config(corpus_file, runner={"kind": "ray", "ray_address": address, "layout": "split",
                                           "llm": {"num_gpus": 1}})
    with pytest.raises(AlignDataError, match=r"no Ray node can run a llm actor: it needs .*GPU"):
        build(cfg, tmp_path / "out")


def test_killing_a_node_mid_build_loses_and_doubles_nothing(tmp_path, cluster):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((TINY_CORPUS + "\n") * 3)  # 9 documents, one shard each
    address = cluster(["--num-cpus=1"], (["--num-cpus=1"], True))
    cfg = make_config(corpus, interleave={"task_weights": {"interleaved": 1.0}}, shards={"docs_per_shard": 1},
                      runner={"kind": "ray", "ray_address": address, "num_workers": 2, "max_in_flight": 1})
    import threading

    out = tmp_path / "ray"
    node = cluster.blocking[0]

    def kill_when_work_started() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not list((out / "shards").glob("*.json")):
            time.sleep(0.1)
        os.killpg(node.pid, signal.SIGKILL)  # the worker node: its raylet, object store and actor

    killer = threading.Thread(target=kill_when_work_started)
    killer.start()
    summary = build(cfg, out)
    killer.join()
    assert node.poll() is not None, "the node was not killed during the build"
    assert summary.written == 9 and not summary.failed
    ids = [json.loads(line)["id"] for p in (out / "filtered").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(ids) == len(set(ids))
    assert validate_build(out) == []  # every planned shard once, ids unique across shards
    build(cfg, tmp_path / "local", runner="local")
    _same_data(tmp_path / "local", out)
