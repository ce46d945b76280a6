"""One worker's state: stages set up once, then any number of shards processed and written."""

from __future__ import annotations

from typing import Iterable

from align_data.config import BuildConfig
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import ShardResult, build_stages, or_error, run_shards
from align_data.pipeline.writers import write_shard
from align_data.schemas.sidecar import ShardSidecar
from align_data.stages.source import SourceStage
from align_data.storage import Store


class ShardWorker:
    """Holds the set-up stage chain; ``run_batch`` turns shards that go through the stages together into written
    files and sidecars."""

    def __init__(self, config: BuildConfig, out_dir: str):
        self.config = config
        self.store = Store(out_dir, config.storage.options)  # a folder or a URL: shards go there directly
        self.config_hash = config.hash()
        self.source = SourceStage(config.segment, config.seed, config.splits.heldout_fraction)
        self.stages = build_stages(config, out_dir)
        for stage in self.stages:
            if not stage.lazy_setup:
                stage.setup()

    def run_batch(self, specs: Iterable[ShardSpec], done: Iterable[int] = ()
                  ) -> list[tuple[ShardSpec, ShardSidecar | None, str | None]]:
        """Each shard's (spec, sidecar, None) or (spec, None, error), in order; the shards in ``done`` go through
        the stages (so the others see the same batches) but are not written nor reported. ServiceUnavailable
        stops the whole batch."""
        specs = list(specs)
        results = run_shards(specs, self.config, self.source, self.stages)
        return write_results(self.store, specs, results, done, self.config_hash)


def write_results(store: Store, specs: list[ShardSpec], results: list[ShardResult | str], done: Iterable[int],
                  config_hash: str) -> list[tuple[ShardSpec, ShardSidecar | None, str | None]]:
    """Write each shard of a batch that is not ``done``: (spec, sidecar, None), or (spec, None, error) for a shard
    that failed in a stage or cannot be written (it fails alone)."""
    done = set(done)
    outcomes = []
    for spec, result in zip(specs, results, strict=True):
        if spec.shard_id in done:
            continue
        written = result if isinstance(result, str) else or_error(write_shard, store, result, config_hash)
        outcomes.append((spec, None, written) if isinstance(written, str) else (spec, written, None))
    return outcomes
