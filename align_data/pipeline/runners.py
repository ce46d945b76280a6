"""Two ways to run the same stages over a plan: an in-process loop, or chained pools of Ray actors."""

from __future__ import annotations

import os
import traceback
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from align_data.config import ActorPoolConfig, BuildConfig
from align_data.errors import AlignDataError, ServiceUnavailable
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import ShardResult, apply_stages, build_stages, stage_groups, start_shard
from align_data.pipeline.worker import ShardWorker
from align_data.pipeline.writers import write_shard
from align_data.stages.source import SourceStage
from align_data.schemas.sidecar import ShardSidecar
from align_data.storage import Store

UNAVAILABLE = "service unavailable: "  # prefix of an actor's error that must stop the build


def shard_error(exc: Exception) -> str:
    """A failed shard's error for the manifest: the exception and the innermost frames of its traceback (where it
    was raised; the outer ones are always the runner and apply_stages)."""
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=-6)}"


# (spec, sidecar or None, error message or None), yielded as shards finish
Outcome = tuple[ShardSpec, ShardSidecar | None, str | None]


def run_local(config: BuildConfig, out_dir: str, specs: list[ShardSpec]) -> Iterator[Outcome]:
    """Process shards in order in this process; a failing shard is reported, the rest go on."""
    if not specs:
        return
    worker = ShardWorker(config, out_dir)
    for spec in specs:
        try:
            yield spec, worker(spec), None
        except ServiceUnavailable:
            raise  # every later shard would fail the same way: stop the build
        except Exception as exc:  # a shard-level failure (e.g. unreadable input) is reported per shard
            yield spec, None, shard_error(exc)


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


def run_ray(config: BuildConfig, out_dir: str, specs: list[ShardSpec],
            on_start: Callable[[], None] | None = None) -> Iterator[Outcome]:
    """Shards flow through a chain of actor pools (one pool when fused). At most ``max_in_flight`` + 1
    shards wait per actor, so memory stays flat; audio passes between pools through the object store,
    never the driver. A shard whose actor died starts again (``max_shard_attempts``) on a live actor;
    a shard that fails in code is reported."""
    import ray

    if not specs:
        return
    _ray_init(config)
    if on_start:
        on_start()
    pools = _pools(config, out_dir, len(specs))
    limit = 1 + config.runner.max_in_flight
    queue = deque(specs)
    attempts: Counter = Counter()
    in_flight: dict = {}  # status ref -> (spec, pool, actor, result ref)
    try:
        while queue or in_flight:
            first = pools[0]
            while queue and len(in_flight) < limit * sum(len(p.actors) for p in pools):
                i = first.least_loaded()
                if first.load[i] >= limit:
                    break
                spec = queue.popleft()
                status, result = first.actors[i].run.options(num_returns=2).remote(spec.to_json(), None)
                in_flight[status] = (spec, first, first.actors[i], result)
                first.load[i] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                spec, pool, actor, result = in_flight.pop(ref)
                if actor in pool.actors:
                    pool.load[pool.actors.index(actor)] -= 1
                try:
                    sidecar_json, error = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                    # the actor or its node died, or took the previous pool's records with it: start again
                    if isinstance(exc, ray.exceptions.RayActorError):
                        pool.drop(actor)
                    attempts[spec.shard_id] += 1
                    if attempts[spec.shard_id] < config.runner.max_shard_attempts:
                        queue.appendleft(spec)
                    else:
                        yield spec, None, f"{type(exc).__name__}: {exc}"
                    continue
                except ray.exceptions.RayError as exc:
                    yield spec, None, f"{type(exc).__name__}: {exc}"
                    continue
                if error is not None and error.startswith(UNAVAILABLE):
                    raise ServiceUnavailable(error[len(UNAVAILABLE):])
                if error is None and pool.level + 1 < len(pools):  # hand the records to the next pool
                    nxt = pools[pool.level + 1]
                    j = nxt.least_loaded()
                    status, result = nxt.actors[j].run.options(num_returns=2).remote(spec.to_json(), result)
                    in_flight[status] = (spec, nxt, nxt.actors[j], result)
                    nxt.load[j] += 1
                    continue
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

    def run(self, spec_json: dict, result: ShardResult | None) -> tuple[tuple[dict | None, str | None], Any]:
        spec = ShardSpec(**spec_json)
        try:
            if result is None:
                result = start_shard(spec, self.config, self.source)
            result = apply_stages(result, self.stages)
            if not self.last:
                return (None, None), result
            return (write_shard(self.store, result, self.config.hash()).to_json(), None), None
        except ServiceUnavailable as exc:
            return (None, f"{UNAVAILABLE}{exc}"), None
        except Exception as exc:  # reported per shard, like the local runner
            return (None, shard_error(exc)), None
