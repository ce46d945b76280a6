"""Builds into and from an S3-compatible object store: moto's S3 server (a real HTTP S3 API) on localhost."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from align_data.config import load_build_config
from align_data.errors import AlignDataError
from align_data.faults import CRASH_AT
from align_data.pipeline.build import build
from align_data.pipeline.validate import validate_build
from align_data.storage import SPOOL_PREFIX, Store, protocol_of
from tests.conftest import ESPEAK_TOML, TINY_CORPUS, without_run_facts

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "corpus"
SOURCE = f"s3://{BUCKET}/texts/tiny.txt"
SOURCE_GLOB = f"s3://{BUCKET}/texts/*.txt"  # what the config names: a URL glob
SECRET = "not-a-real-secret-0123456789"

CONFIG = f"""
seed = 0

[[sources]]
name = "tiny"
path = "{SOURCE_GLOB}"
format = "txt"

[segment]
min_words = 4
max_words = 14

[interleave]
task_weights = {{ interleaved = 1.0 }}

[shards]
docs_per_shard = 1

[runner]
kind = "local"
num_workers = 2
""" + ESPEAK_TOML


@pytest.fixture(scope="module")
def s3():
    """An S3 server on a free port, credentials and endpoint in the environment (as on a cluster node), a bucket
    holding the source text. Yields an s3fs filesystem on it."""
    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                           "AWS_ENDPOINT_URL")}
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(BUCKET)
    fs.pipe_file(SOURCE, TINY_CORPUS.encode())
    try:
        yield fs
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "build.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(s3, config_file, tmp_path_factory) -> Path:
    """The same config built into a local folder (its source is read from the store too)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    summary = build(load_build_config(config_file), out)
    assert summary.written == 3 and not summary.failed
    return out


def assert_same_as_local(local: Path, url: str) -> None:
    """Every data file byte-identical to the local build; sidecars and manifest equal but for timings."""
    store = Store(url)
    local_files = sorted(str(p.relative_to(local)) for d in ("shards", "errors", "filtered")
                         for p in (local / d).rglob("*"))
    remote_files = sorted(rel for d in ("shards", "errors", "filtered") for rel in store.files(d))
    assert remote_files == local_files and len(local_files) == 3 * 5
    for rel in local_files:
        if rel.endswith(".json"):
            got = without_run_facts(json.loads(store.read_text(rel)))
            want = without_run_facts(json.loads((local / rel).read_text()))
            assert got == want, (rel, {k: (got.get(k), want.get(k)) for k in got.keys() | want.keys()
                                       if got.get(k) != want.get(k)})
        else:
            assert store.read_bytes(rel) == (local / rel).read_bytes(), rel
    assert without_run_facts(json.loads(store.read_text("manifest.json"))) == \
        without_run_facts(json.loads((local / "manifest.json").read_text()))


def _spools() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{SPOOL_PREFIX}{os.getpid()}-*")}


def test_build_to_s3_from_s3_equals_the_local_build(s3, config_file, reference, monkeypatch):
    url = f"s3://{BUCKET}/builds/one"
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    # the endpoint and keys from the config's storage options this time, not the environment
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    options = f'storage.options.s3={{endpoint_url="{endpoint}", key="testing", secret="{SECRET}"}}'
    config = load_build_config(config_file, [options])
    assert config.hash() == load_build_config(config_file).hash()  # where files live is not what they hold
    before = _spools()
    summary = build(config, url)
    assert summary.written == 3 and not summary.failed and summary.manifest["rows"] > 0
    assert _spools() == before, "upload spools left behind"
    monkeypatch.undo()  # validate, inspect and the readers below reach the store through the environment

    assert validate_build(url) == []
    assert_same_as_local(reference, url)
    written = json.loads(s3.cat_file(f"{url}/config.json"))
    assert "storage" not in written["config"]
    for path in s3.find(url):
        assert SECRET.encode() not in s3.cat_file(path), f"{path} holds the secret"
    m = summary.manifest
    assert m["rows"] + m["errors"] + m["filtered"] == m["candidates"]


def test_cli_inspect_and_validate_read_a_store(s3, config_file, reference):
    from typer.testing import CliRunner

    from align_data.cli import app

    url = f"s3://{BUCKET}/builds/cli"
    build(load_build_config(config_file), url)
    runner = CliRunner()
    result = runner.invoke(app, ["validate", url])
    assert result.exit_code == 0 and "valid" in result.output, result.output
    result = runner.invoke(app, ["inspect", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totals"]["rows"] == json.loads((reference / "manifest.json").read_text())["rows"]
    result = runner.invoke(app, ["inspect", url, "--shard", "0", "--rows", "1"])
    assert result.exit_code == 0 and "tiny-" in result.output, result.output
    s3.rm_file(f"{url}/shards/00001.tar")  # a lost object is reported, not passed over
    result = runner.invoke(app, ["validate", url])
    assert result.exit_code == 1 and "shards/00001.tar is missing" in result.output


def test_datasets_and_pyarrow_load_the_shards_from_the_store(s3, config_file, reference):
    import datasets
    import pyarrow.parquet as pq

    url = f"s3://{BUCKET}/builds/load"
    build(load_build_config(config_file), url)
    table = pq.read_table(f"{BUCKET}/builds/load/shards/00000.parquet", filesystem=s3)
    assert table.equals(pq.read_table(reference / "shards" / "00000.parquet"))
    ds = datasets.load_dataset("parquet", data_files=f"{url}/shards/*.parquet", split="train")
    assert len(ds) == json.loads((reference / "manifest.json").read_text())["rows"]
    local_ids = [i for p in sorted((reference / "shards").glob("*.parquet"))
                 for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]
    assert sorted(ds["id"]) == sorted(local_ids)


def test_resume_and_overwrite_on_a_store(s3, config_file, reference):
    url = f"s3://{BUCKET}/builds/again"
    config = load_build_config(config_file)
    build(config, url)
    with pytest.raises(AlignDataError, match="not empty"):
        build(config, url)
    again = build(config, url, resume=True)
    assert again.skipped == 3 and again.written == 0
    s3.rm_file(f"{url}/shards/00002.json")  # a shard whose sidecar is gone is redone
    again = build(config, url, resume=True)
    assert again.skipped == 2 and again.written == 1
    s3.pipe_file(f"{url}/shards/00000.parquet", b"truncated")  # a wrong size is not trusted either
    again = build(config, url, resume=True)
    assert again.skipped == 2 and again.written == 1
    fresh = build(config, url, overwrite=True)
    assert fresh.written == 3 and validate_build(url) == []
    assert_same_as_local(reference, url)


def _crashing_build(config: Path, url: str, point: str, resume: bool = False,
                    tmp: Path | None = None) -> subprocess.CompletedProcess:
    """The build CLI in a new process that SIGKILLs itself at ``point``; ``tmp``: its TMPDIR (where it spools)."""
    env = dict(os.environ, **{CRASH_AT: point}, RAY_AUTH_MODE="disabled", **({"TMPDIR": str(tmp)} if tmp else {}))
    cmd = [sys.executable, "-m", "align_data.cli", "build", str(config), "--out", url]
    return subprocess.run(cmd + (["--resume"] if resume else []), env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600, start_new_session=True)


# uploads in order: config.json 1, plan.json 2, then per shard parquet, tar, errors, filtered, sidecar
# (shard 0 = uploads 3-7, shard 1 = 8-12, ...)
STORE_POINTS = [
    ("write:before_upload:4", "shard 0's tar spooled but not uploaded (its Parquet is in the store)", 0),
    ("write:before_upload:7", "every file of shard 0 uploaded, its sidecar not", 0),
    ("write:after_upload:8", "shard 0 complete, shard 1's Parquet uploaded, nothing else", 1),
]


@pytest.mark.parametrize("point,where,torn", STORE_POINTS, ids=[p for p, _, _ in STORE_POINTS])
def test_kill_mid_build_then_resume_on_a_store(s3, config_file, reference, point, where, torn, tmp_path):
    url = f"s3://{BUCKET}/builds/crash-{point.replace(':', '-')}"
    killed = _crashing_build(config_file, url, point, tmp=tmp_path)  # its own TMPDIR: other jobs spool elsewhere
    assert killed.returncode == -9, (where, killed.stderr[-2000:])
    leaked = list(tmp_path.glob(f"{SPOOL_PREFIX}*"))
    assert len(leaked) == (1 if "before_upload" in point else 0), leaked  # only the killed upload's local spool
    store = Store(url)
    assert store.exists(f"shards/{torn:05d}.parquet")  # a torn shard: data in the store ...
    assert not store.exists(f"shards/{torn:05d}.json")  # ... but no sidecar, so it never counts as done
    assert validate_build(url) != []
    resumed = _crashing_build(config_file, url, "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    said = " ".join(resumed.stdout.split())
    assert f"shards written {3 - torn}, skipped {torn}," in said, said  # shards before the torn one were kept
    assert validate_build(url) == []
    assert_same_as_local(reference, url)


@pytest.mark.ray
def test_ray_workers_write_their_shards_to_the_store(s3, config_file, reference, monkeypatch):
    import ray

    import align_data.pipeline.worker as worker

    def driver_must_not_write(*args, **kwargs):
        raise AssertionError("the driver wrote a shard")

    monkeypatch.setattr(worker, "write_shard", driver_must_not_write)  # patched here, not in the actors
    if ray.is_initialized():
        ray.shutdown()  # a fresh local Ray: its workers inherit this environment (the store's endpoint)
    url = f"s3://{BUCKET}/builds/ray"
    try:
        summary = build(load_build_config(config_file, ["runner.kind=ray", "runner.num_workers=2"]), url)
    finally:
        ray.shutdown()
    assert summary.written == 3 and not summary.failed, summary.failed
    assert validate_build(url) == []
    assert_same_as_local(reference, url)


def test_a_missing_bucket_stops_the_build_before_any_work(s3, config_file):
    with pytest.raises(AlignDataError, match="cannot write to the output folder s3://no-such-bucket/out"):
        build(load_build_config(config_file), "s3://no-such-bucket/out")
    assert not s3.exists("no-such-bucket")  # not created behind the user's back


def test_unknown_protocols_and_missing_backends_are_clear_errors(interleaved_config):
    with pytest.raises(AlignDataError, match="unknown storage protocol 'nosuch'"):
        build(interleaved_config, "nosuch://bucket/out")
    with pytest.raises(AlignDataError, match="pip install gcsfs"):
        Store("gs://bucket/out")
    assert protocol_of("S3://b/x") == "s3" and protocol_of("/data/out") is None


def test_file_urls_are_local_folders_with_atomic_writes(tmp_path, interleaved_config):
    summary = build(interleaved_config, f"file://{tmp_path}/out")
    assert summary.written == 2 and validate_build(tmp_path / "out") == []
    assert validate_build(f"file://{tmp_path}/out") == []


def test_a_source_replaced_at_the_same_url_is_read_anew(s3, tmp_path: Path) -> None:
    # datasets keeps downloaded data files by URL alone unless asked to check the ETag; a build is its own process
    url = f"s3://{BUCKET}/replaced/corpus.txt"
    count = ("import sys; from align_data.config import SourceConfig; from align_data.pipeline.reader import "
             "count_documents; print(count_documents(SourceConfig(name='s', path=sys.argv[1], format='txt')))")
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    seen = []
    for n in (2, 4):
        s3.pipe_file(url.removeprefix("s3://"), "\n\n".join(f"Document {i} of {n}." for i in range(n)).encode())
        run = subprocess.run([sys.executable, "-c", count, url], env=env, capture_output=True, text=True,
                             check=False, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        seen.append(int(run.stdout.split()[-1]))
    assert seen == [2, 4]
