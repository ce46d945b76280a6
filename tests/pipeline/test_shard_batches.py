"""Shard batches (llm.batch_shards): several shards through the stages together, the LLM stage answering all their
prompts in one call; counts, usage and seconds split back per shard; a failing shard fails alone; resume redoes a
batch whole; the runners agree."""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import pyarrow.parquet as pq
import pytest

from align_data.config import LLMConfig, QualityConfig
from align_data.errors import ServiceUnavailable
from align_data.pipeline.build import build
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.runners import ShardBatch, shard_batches
from align_data.pipeline.stages import ShardResult, apply_stages, apply_stages_together
from align_data.schemas import Paralinguistics, Record, SourceRef, Voice
from align_data.schemas.sidecar import StageCounts
from align_data.stages.base import RecordError, Stage
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.client import Completion
from align_data.stages.targets.stage import RepairPolicy
from tests.conftest import make_config, without_run_facts


def _spec(shard: int) -> ShardSpec:
    return ShardSpec(shard, 0, shard, shard + 1, 0)


def test_batches_are_consecutive_shard_ids_whatever_is_left_to_do():
    specs = [_spec(i) for i in range(7)]
    assert [[s.shard_id for s in b.specs] for b in shard_batches(specs, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [[s.shard_id for s in b.specs] for b in shard_batches(specs, 1)] == [[i] for i in range(7)]
    resumed = shard_batches(specs, 3, todo={1, 6})  # shards 0 and 2 are complete, 3-5 too
    assert [([s.shard_id for s in b.specs], sorted(b.done)) for b in resumed] == [([0, 1, 2], [0, 2]), ([6], [])]
    assert [s.shard_id for s in resumed[0].todo] == [1]
    assert ShardBatch.from_json(resumed[0].to_json()) == resumed[0]


def _records(shard: int, n: int) -> list[Record]:
    return [Record(id=f"s{shard}-{i}", shard_id=shard, source=SourceRef("t", str(shard), i), text=f"text {i}")
            for i in range(n)]


def _result(shard: int, n: int) -> ShardResult:
    records = _records(shard, n)
    return ShardResult(_spec(shard), records, {"source": StageCounts(total=n, passed=n)}, {"source": 0.0})


class CountingAcross(Stage):
    """Filters every third record; remembers how many records each call saw; usage per shard."""

    name: ClassVar[str] = "across"
    across_shards: ClassVar[bool] = True

    def __init__(self, fail: bool = False):
        self.calls: list[int] = []
        self.fail = fail
        self._by_shard: dict[int, dict[str, int]] = {}

    def __call__(self, batch):
        if self.fail:
            raise RuntimeError("the backend broke")
        self.calls.append(len(batch))
        time.sleep(0.012 * len(batch))  # seconds to share out
        self._by_shard = {}
        for r in batch:
            counts = self._by_shard.setdefault(r.shard_id, {"calls": 0})
            counts["calls"] += 1
        return [dataclasses.replace(r, filtered="third") if int(r.id.split("-")[1]) % 3 == 2 else r for r in batch]

    def take_usage(self):
        return {"calls": sum(c["calls"] for c in self._by_shard.values())}

    def take_usage_by_shard(self):
        return self._by_shard


class BreaksOnShard(Stage):
    name: ClassVar[str] = "per_shard"

    def __init__(self, shard: int):
        self.shard = shard

    def __call__(self, batch):
        if any(r.shard_id == self.shard for r in batch):
            raise RuntimeError(f"shard {self.shard} is unreadable here")
        return list(batch)


def test_an_across_stage_sees_every_shard_in_one_call_and_counts_stay_per_shard():
    stage = CountingAcross()
    together = apply_stages_together([_result(0, 4), _result(1, 3), _result(2, 5)], [stage])
    assert stage.calls == [12]
    alone = [apply_stages(_result(s, n), [CountingAcross()]) for s, n in ((0, 4), (1, 3), (2, 5))]
    for a, b in zip(together, alone, strict=True):
        assert a.records == b.records and a.stages == b.stages and a.filtered_by == b.filtered_by
    assert [r.stages["across"].usage for r in together] == [{"calls": 4}, {"calls": 3}, {"calls": 5}]
    shares = [r.seconds["across"] for r in together]
    assert shares[2] > shares[0] > shares[1] > 0  # the call's seconds shared out by calls: 5, 4, 3


def test_a_stage_that_raises_on_one_shard_fails_that_shard_only():
    results = apply_stages_together([_result(0, 2), _result(1, 2), _result(2, 2)],
                                    [BreaksOnShard(1), CountingAcross()])
    assert isinstance(results[1], str) and "shard 1 is unreadable here" in results[1]
    assert [len(r.records) for r in (results[0], results[2])] == [2, 2]
    assert set(results[0].stages) == {"source", "per_shard", "across"}
    broken = apply_stages_together([_result(0, 2), _result(1, 2)], [CountingAcross(fail=True)])
    assert all(isinstance(r, str) and "the backend broke" in r for r in broken)


def test_service_unavailable_stops_the_whole_batch():
    class Down(CountingAcross):
        def __call__(self, batch):
            raise ServiceUnavailable("the LLM server is down")

    with pytest.raises(ServiceUnavailable):
        apply_stages_together([_result(0, 1), _result(1, 1)], [Down()])


MALE = Voice("espeak", "en-gb-x-gbclan+m3", "male", "Northern English", "en-gb")
PARA = Paralinguistics(duration_s=3.0, speech_rate_wps=2.7, f0_mean_hz=120.0, f0_std_hz=15.0, pitch_level="normal",
                       rms_dbfs=-20.0, volume_level="normal", speed_level="normal")


class EchoesSome:
    """Fault injection only: answers depend on the prompt alone (any batch); a prompt about a text holding 'echo'
    gets that text back (the echo check repairs it until the repairs run out)."""

    model_name = "echoes"
    backend = "echoes"

    def __init__(self):
        self.calls: list[int] = []

    def complete(self, prompts, sampling, seeds):
        self.calls.append(len(prompts))
        out = []
        for p in prompts:
            last = p.text.rsplit("Text:", 1)[1].split("\n")[0].strip()
            text = last if "echo" in last else "The wind dropped and the harbour went quiet again before dawn."
            out.append(Completion(text, "stop", len(p.text) // 10, 7))
        return out


def _llm_records(shard: int, texts: list[str]) -> list[Record]:
    return [Record(id=f"s{shard}-{i}", shard_id=shard, source=SourceRef("t", str(shard), i), text=t,
                   next_text="Then it rained.", task="continuation", voice=MALE, paralinguistics=PARA)
            for i, t in enumerate(texts)]


def test_targets_usage_per_shard_equals_each_shard_alone():
    shards = {0: ["The boats were pulled up the shingle.", "They would echo the gulls all morning long."],
              1: ["The lake warmed at the surface first.", "The deep water stayed cold all year.",
                  "A bell rang out over the quiet town square."]}
    repair = RepairPolicy.from_config(QualityConfig(max_repairs=2))
    client = EchoesSome()
    stage = TargetsStage(LLMConfig(batch_size=16), seed=0, client=client, repair=repair)
    together = stage([r for s, texts in shards.items() for r in _llm_records(s, texts)])
    by_shard = stage.take_usage_by_shard()
    assert client.calls == [5, 1, 1]  # every first answer in one call, then the one echo's repairs
    for shard, texts in shards.items():
        alone_stage = TargetsStage(LLMConfig(batch_size=16), seed=0, client=EchoesSome(), repair=repair)
        alone = alone_stage(_llm_records(shard, texts))
        assert [r for r in together if r.shard_id == shard] == alone
        assert by_shard[shard] == alone_stage.take_usage()
    assert by_shard[0]["repairs:echo"] == 2 and by_shard[0]["repairs_exhausted"] == 1 and by_shard[0]["calls"] == 4
    assert "repair_calls" not in by_shard[1] and by_shard[1]["calls"] == 3
    assert stage.take_usage()["calls"] == 7 and stage.take_usage()["tokens_out"] == 49


def test_a_bad_answer_fails_its_record_and_the_other_shard_is_untouched():
    class FailsOne(EchoesSome):
        def complete(self, prompts, sampling, seeds):
            out = super().complete(prompts, sampling, seeds)
            return [RecordError("llm_timeout", "no answer") if "lake" in p.text.rsplit("Text:", 1)[1] else o
                    for p, o in zip(prompts, out, strict=True)]

    stage = TargetsStage(LLMConfig(), seed=0, client=FailsOne(), repair=RepairPolicy())
    out = stage(_llm_records(0, ["The boats were pulled up the shingle."]) +
                _llm_records(1, ["The lake warmed at the surface first."]))
    assert out[0].live and out[1].error is not None and out[1].error.kind == "llm_timeout"
    by_shard = stage.take_usage_by_shard()
    assert (by_shard[0]["failures"], by_shard[1]["failures"]) == (0, 1)


def _shards(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for d in ("shards", "errors", "filtered") for p in sorted((out / d).iterdir())
            if not p.name.endswith(".json")}


def test_batched_build_writes_every_shard_and_resume_redoes_the_batch_whole(tmp_path, corpus_file):
    """Interleaved rows (no LLM): three shards in batches of two; deleting shard 1's sidecar redoes batch [0, 1]
    without rewriting shard 0, and the bytes are those of the first build."""
    cfg = make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}}, shards={"docs_per_shard": 1},
                      llm={"batch_shards": 2})
    first = build(cfg, tmp_path / "out")
    assert first.written == 3 and not first.failed
    before = _shards(tmp_path / "out")
    shard0 = (tmp_path / "out" / "shards" / "00000.json").stat().st_mtime_ns
    (tmp_path / "out" / "shards" / "00001.json").unlink()
    again = build(cfg, tmp_path / "out", resume=True)
    assert (again.skipped, again.written) == (2, 1)
    assert _shards(tmp_path / "out") == before
    assert (tmp_path / "out" / "shards" / "00000.json").stat().st_mtime_ns == shard0
    one = build(make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}},
                            shards={"docs_per_shard": 1}), tmp_path / "one")
    # no LLM here, so batching changes no row (the files name the config hash, which batch_shards is part of)
    for name in ("00000", "00001", "00002"):
        rows = [pq.read_table(out / "shards" / f"{name}.parquet").replace_schema_metadata(None)
                for out in (tmp_path / "out", tmp_path / "one")]
        assert rows[0].equals(rows[1])
    assert without_run_facts(one.manifest)["rows"] == without_run_facts(first.manifest)["rows"]


@pytest.mark.ray
@pytest.mark.parametrize("layout", ["fused", "split"])
def test_ray_batches_match_the_local_loop(tmp_path, corpus_file, layout):
    import ray

    sections = dict(interleave={"task_weights": {"interleaved": 1.0}}, shards={"docs_per_shard": 1},
                    llm={"batch_shards": 2})
    local = build(make_config(corpus_file, **sections), tmp_path / "local")
    try:
        remote = build(make_config(corpus_file, **sections, runner={"kind": "ray", "layout": layout,
                                                                    "num_workers": 2}), tmp_path / "ray")
    finally:
        ray.shutdown()
    assert remote.written == local.written == 3 and not remote.failed
    assert _shards(tmp_path / "ray") == _shards(tmp_path / "local")
