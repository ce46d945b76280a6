"""Two ways to run the same stages over a plan: an in-process loop, or chained pools of Ray actors. The unit they
hand out is a ShardBatch: shards that go through the stages together (llm.batch_shards), each written on its own."""

from __future__ import annotations

import os
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from align_data.config import ActorPoolConfig, BuildConfig
from align_data.errors import AlignDataError, ServiceUnavailable
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import ShardResult, apply_stages_together, build_stages, stage_groups, start_shards
from align_data.pipeline.worker import ShardWorker, write_results
from align_data.stages.source import SourceStage
from align_data.schemas.sidecar import ShardSidecar
from align_data.storage import Store

UNAVAILABLE = "service unavailable: "  # prefix of an actor's error that must stop the build

# (spec, sidecar or None, error message or None), yielded as shards finish
Outcome = tuple[ShardSpec, ShardSidecar | None, str | None]


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """Shards that go through the stages together; those in ``done`` are complete already (a resumed build redoes
    their batch whole, so that the LLM sees the same batches) and are not written again."""

    specs: tuple[ShardSpec, ...]
    done: frozenset[int] = frozenset()

    @property
    def todo(self) -> list[ShardSpec]:
        return [s for s in self.specs if s.shard_id not in self.done]

    def to_json(self) -> dict:
        return {"specs": [s.to_json() for s in self.specs], "done": sorted(self.done)}

    @classmethod
    def from_json(cls, data: dict) -> "ShardBatch":
        return cls(tuple(ShardSpec(**s) for s in data["specs"]), frozenset(data["done"]))


def shard_batches(specs: Sequence[ShardSpec], size: int, todo: set[int] | None = None) -> list[ShardBatch]:
    """The plan's shards in batches of ``size`` consecutive shard ids (the same batches whatever is left to do);
    with ``todo``, only the batches holding a shard to do, the others of their batch marked done."""
    groups: dict[int, list[ShardSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.shard_id // size, []).append(spec)
    batches = []
    for _, members in sorted(groups.items()):
        ids = {s.shard_id for s in members}
        if todo is None:
            batches.append(ShardBatch(tuple(members)))
        elif ids & todo:
            batches.append(ShardBatch(tuple(members), frozenset(ids - todo)))
    return batches


def run_local(config: BuildConfig, out_dir: str, batches: list[ShardBatch]) -> Iterator[Outcome]:
    """Process the batches in order in this process; a failing shard is reported, the rest go on."""
    if not batches:
        return
    worker = ShardWorker(config, out_dir)
    for batch in batches:
        yield from worker.run_batch(batch.specs, batch.done)


def _ray_init(config: BuildConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if config.runner.ray_address:
        ray.init(address=config.runner.ray_address, log_to_driver=False)
    else:
        r = config.runner
        wanted = (r.num_workers * r.cpus_per_worker if r.layout == "fused"
                  else r.speech.actors * r.speech.num_cpus + r.llm.actors * r.llm.num_cpus)
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 object_store_memory=r.object_store_mb * 1024 * 1024,
                 num_cpus=max(os.cpu_count() or 1, int(wanted + 0.999)))


def _check_placeable(name: str, spec: ActorPoolConfig) -> None:
    """Fail at once, naming what is missing, when no node of the cluster can hold one actor of a pool."""
    import ray

    need = {"CPU": spec.num_cpus, "GPU": spec.num_gpus, **spec.resources}
    need = {k: v for k, v in need.items() if v > 0}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
        have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(res.items()) if not k.startswith("node:")
                                   and "memory" not in k) for res in nodes)
        raise AlignDataError(f"no Ray node can run a {name} actor: it needs {need}, the nodes have [{have}]; "
                             f"change runner.{name if name != 'all' else 'cpus_per_worker/resources'} or add nodes")


@dataclass
class _Pool:
    """One actor pool: the actors, how many shards each holds, and how to make another."""

    level: int
    make: Callable[[], Any]
    actors: list = field(default_factory=list)
    load: list = field(default_factory=list)

    def add(self) -> None:
        self.actors.append(self.make())
        self.load.append(0)

    def least_loaded(self) -> int:
        return min(range(len(self.actors)), key=self.load.__getitem__)

    def drop(self, actor: Any) -> None:
        """Forget a dead actor; keep the pool non-empty with a fresh one (placed when resources allow)."""
        import ray

        index = next((i for i, a in enumerate(self.actors) if a is actor), None)
        if index is None:
            return
        del self.actors[index], self.load[index]
        ray.kill(actor)
        if not self.actors:
            self.add()


def _pools(config: BuildConfig, out_dir: str, n_specs: int) -> list[_Pool]:
    """The actor pools of the configured layout, in pipeline order."""
    import ray

    config_json = config.model_dump(mode="json")
    runner = config.runner
    if runner.layout == "fused":
        groups = [("all", ActorPoolConfig(actors=min(runner.num_workers, n_specs), num_cpus=runner.cpus_per_worker,
                                          resources=runner.resources))]
    else:
        groups = [(name, getattr(runner, name)) for name, _ in stage_groups(build_stages(config))]
    for name, spec in groups:
        _check_placeable(name, spec)
    pools = []
    for level, (name, spec) in enumerate(groups):
        options = dict(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, resources=dict(spec.resources),
                       max_restarts=0, max_task_retries=0)
        last = level == len(groups) - 1
        cls = ray.remote(_RayGroupWorker)

        def make(cls=cls, options=options, level=level, name=name, last=last):
            return cls.options(name=f"align-data-{name}-{level}-{uuid.uuid4().hex[:8]}", **options).remote(
                config_json, out_dir, level, last)

        pool = _Pool(level, make)
        for _ in range(spec.actors):
            pool.add()
        pools.append(pool)
    return pools


def run_ray(config: BuildConfig, out_dir: str, batches: list[ShardBatch],
            on_start: Callable[[], None] | None = None) -> Iterator[Outcome]:
    """Shard batches flow through a chain of actor pools (one pool when fused). At most ``max_in_flight`` + 1
    batches wait per actor, so memory stays flat; audio passes between pools through the object store,
    never the driver. A batch whose actor died starts again (``max_shard_attempts``) on a live actor;
    a shard that fails in code is reported."""
    import ray

    if not batches:
        return
    _ray_init(config)
    if on_start:
        on_start()
    pools = _pools(config, out_dir, len(batches))
    limit = 1 + config.runner.max_in_flight
    queue = deque(batches)
    attempts: Counter = Counter()
    in_flight: dict = {}  # status ref -> (batch, pool, actor, result ref)
    try:
        while queue or in_flight:
            first = pools[0]
            while queue and len(in_flight) < limit * sum(len(p.actors) for p in pools):
                i = first.least_loaded()
                if first.load[i] >= limit:
                    break
                batch = queue.popleft()
                status, result = first.actors[i].run.options(num_returns=2).remote(batch.to_json(), None)
                in_flight[status] = (batch, first, first.actors[i], result)
                first.load[i] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                batch, pool, actor, result = in_flight.pop(ref)
                if actor in pool.actors:
                    pool.load[pool.actors.index(actor)] -= 1
                try:
                    statuses = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                    # the actor or its node died, or took the previous pool's records with it: start again
                    if isinstance(exc, ray.exceptions.RayActorError):
                        pool.drop(actor)
                    key = batch.specs[0].shard_id
                    attempts[key] += 1
                    if attempts[key] < config.runner.max_shard_attempts:
                        queue.appendleft(batch)
                    else:
                        for spec in batch.todo:
                            yield spec, None, f"{type(exc).__name__}: {exc}"
                    continue
                except ray.exceptions.RayError as exc:
                    for spec in batch.todo:
                        yield spec, None, f"{type(exc).__name__}: {exc}"
                    continue
                stop = next((e for _, e in statuses if e is not None and e.startswith(UNAVAILABLE)), None)
                if stop is not None:
                    raise ServiceUnavailable(stop[len(UNAVAILABLE):])
                if pool.level + 1 < len(pools):  # hand the records (and any shard's error) to the next pool
                    nxt = pools[pool.level + 1]
                    j = nxt.least_loaded()
                    status, result = nxt.actors[j].run.options(num_returns=2).remote(batch.to_json(), result)
                    in_flight[status] = (batch, nxt, nxt.actors[j], result)
                    nxt.load[j] += 1
                    continue
                for spec, (sidecar_json, error) in zip(batch.specs, statuses, strict=True):
                    if spec.shard_id not in batch.done:
                        yield spec, None if sidecar_json is None else ShardSidecar.from_json(sidecar_json), error
    finally:
        for pool in pools:
            for actor in pool.actors:
                ray.kill(actor)


class _RayGroupWorker:
    """Ray actor body: the stages of one pool of the chain (all of them when fused), set up once.

    ``run`` returns (status, records): status is (sidecar json | None, error | None); the records go on to
    the next pool by reference, the last pool writes the shard."""

    def __init__(self, config_json: dict, out_dir: str, level: int, last: bool):
        config = BuildConfig.model_validate(config_json)
        self.config, self.level, self.last = config, level, last
        self.store = Store(out_dir, config.storage.options) if last else None  # the last pool writes the shards
        stages = build_stages(config, out_dir)
        if config.runner.layout == "split":
            stages = stage_groups(stages)[level][1]
        self.stages = stages
        self.source = SourceStage(config.segment, config.seed, config.splits.heldout_fraction) if level == 0 else None
        for stage in self.stages:
            if not stage.lazy_setup:
                stage.setup()

    def run(self, batch_json: dict, results: list[ShardResult | str] | None
            ) -> tuple[list[tuple[dict | None, str | None]], Any]:
        """Status per shard of the batch: (sidecar json | None, error | None); a shard that failed in an earlier
        pool carries its error on. The last pool writes the shards not already done."""
        batch = ShardBatch.from_json(batch_json)
        try:
            if results is None:
                results = start_shards(list(batch.specs), self.config, self.source)
            results = apply_stages_together(results, self.stages)
        except ServiceUnavailable as exc:
            return [(None, f"{UNAVAILABLE}{exc}")] * len(batch.specs), None
        if not self.last:
            return [(None, r if isinstance(r, str) else None) for r in results], results
        written = {spec.shard_id: (None if sidecar is None else sidecar.to_json(), error) for spec, sidecar, error
                   in write_results(self.store, list(batch.specs), results, batch.done, self.config.hash())}
        return [written.get(spec.shard_id, (None, None)) for spec in batch.specs], None
