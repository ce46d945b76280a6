"""The Ray runner: byte-identical to the local runner, on local Ray and on a real multi-process cluster."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from tests.conftest import make_config
from tests.fakes.openai_server import free_port

SHARD_FILES = ("parquet", "tar")


def _same_shards(a: Path, b: Path) -> None:
    names = sorted(p.name for p in (a / "shards").iterdir() if p.suffix[1:] in SHARD_FILES)
    assert names == sorted(p.name for p in (b / "shards").iterdir() if p.suffix[1:] in SHARD_FILES)
    assert names
    for name in names:
        assert (a / "shards" / name).read_bytes() == (b / "shards" / name).read_bytes(), name
    for kind in ("errors", "filtered"):
        for p in (a / kind).iterdir():
            assert p.read_bytes() == (b / kind / p.name).read_bytes()


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def ray_cluster():
    """A head node and a second worker node as separate processes, like a small cluster."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    port = free_port()
    common = ["--num-cpus=1", "--disable-usage-stats", "--object-store-memory=200000000"]
    subprocess.run([_ray_bin(), "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                   check=True, env=env, capture_output=True)
    subprocess.run([_ray_bin(), "start", f"--address=127.0.0.1:{port}", *common], check=True, env=env,
                   capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([_ray_bin(), "stop", "--force"], env=env, capture_output=True)


@pytest.mark.ray
def test_local_ray_matches_local_loop(tmp_path, interleaved_config):
    import ray

    local = build(interleaved_config, tmp_path / "local")
    try:
        remote = build(interleaved_config, tmp_path / "ray", runner="ray")
    finally:
        ray.shutdown()
    assert remote.written == local.written == 2 and not remote.failed
    _same_shards(tmp_path / "local", tmp_path / "ray")
    assert validate_build(tmp_path / "ray") == []


@pytest.mark.slow
@pytest.mark.ray
def test_full_mix_on_a_two_node_cluster_matches_local(tmp_path, corpus_file, ray_cluster):
    """~12 segments of all three kinds with the real LLM: the two runners write the same bytes."""
    cfg = make_config(corpus_file, llm={"max_new_tokens": 8, "batch_size": 4},
                      quality={"target_filters": []},  # answers cut at 8 tokens: over_length would filter them
                      segment={"min_words": 3, "max_words": 8},
                      runner={"kind": "ray", "ray_address": ray_cluster, "num_workers": 2})
    remote = build(cfg, tmp_path / "ray")
    local = build(cfg, tmp_path / "local", runner="local")
    m = local.manifest
    assert not remote.failed and remote.written == 2
    assert m["rows"] >= 8 and set(m["tasks"]) == {"continuation", "description", "interleaved"}
    _same_shards(tmp_path / "local", tmp_path / "ray")
    assert validate_build(tmp_path / "ray") == []
