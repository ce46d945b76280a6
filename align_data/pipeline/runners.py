"""Two ways to run the same ShardWorker over a plan: an in-process loop, or a pool of Ray actors."""

from __future__ import annotations

import os
import traceback
from typing import Callable, Iterator

from align_data.config import BuildConfig
from align_data.errors import ServiceUnavailable
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.worker import ShardWorker
from align_data.schemas.sidecar import ShardSidecar

UNAVAILABLE = "service unavailable: "  # prefix of an actor's error that must stop the build

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
            yield spec, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"


def _ray_init(config: BuildConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if config.runner.ray_address:
        ray.init(address=config.runner.ray_address, log_to_driver=False)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 object_store_memory=config.runner.object_store_mb * 1024 * 1024,
                 num_cpus=max(os.cpu_count() or 1, int(config.runner.num_workers * config.runner.cpus_per_worker)))


def run_ray(config: BuildConfig, out_dir: str, specs: list[ShardSpec],
            on_start: Callable[[], None] | None = None) -> Iterator[Outcome]:
    """Shards go to a pool of actors, each holding set-up stages; at most ``max_in_flight`` queued per
    actor. Lost actors restart and their shard is retried; a shard that fails in code is reported."""
    import ray

    if not specs:
        return
    _ray_init(config)
    if on_start:
        on_start()
    n = min(config.runner.num_workers, len(specs))
    actor_cls = ray.remote(_RayShardWorker).options(
        num_cpus=config.runner.cpus_per_worker, max_restarts=2, max_task_retries=2)
    actors = [actor_cls.remote(config.model_dump(mode="json"), out_dir) for _ in range(n)]
    queue = list(specs)
    in_flight: dict = {}
    load = {i: 0 for i in range(n)}
    limit = 1 + config.runner.max_in_flight
    try:
        while queue or in_flight:
            for i in range(n):
                while queue and load[i] < limit:
                    spec = queue.pop(0)
                    in_flight[actors[i].run.remote(spec.to_json())] = (spec, i)
                    load[i] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                spec, i = in_flight.pop(ref)
                load[i] -= 1
                try:
                    sidecar_json, error = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield spec, None, f"{type(exc).__name__}: {exc}"
                    continue
                if error is not None and error.startswith(UNAVAILABLE):
                    raise ServiceUnavailable(error[len(UNAVAILABLE):])
                yield spec, None if sidecar_json is None else ShardSidecar.from_json(sidecar_json), error
    finally:
        for actor in actors:
            ray.kill(actor)


class _RayShardWorker:
    """Ray actor body: rebuilds the config on the worker and runs shards there."""

    def __init__(self, config_json: dict, out_dir: str):
        self.worker = ShardWorker(BuildConfig.model_validate(config_json), out_dir)

    def run(self, spec_json: dict) -> tuple[dict | None, str | None]:
        spec = ShardSpec(**spec_json)
        try:
            return self.worker(spec).to_json(), None
        except ServiceUnavailable as exc:
            return None, f"{UNAVAILABLE}{exc}"
        except Exception as exc:  # reported per shard, like the local runner
            return None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
