"""One worker's state: stages set up once, then any number of shards processed and written."""

from __future__ import annotations

from align_data.config import BuildConfig
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import build_stages, run_shard
from align_data.pipeline.writers import write_shard
from align_data.schemas.sidecar import ShardSidecar
from align_data.stages.source import SourceStage
from align_data.storage import Store


class ShardWorker:
    """Holds the set-up stage chain; ``__call__`` turns a ShardSpec into written files and a sidecar."""

    def __init__(self, config: BuildConfig, out_dir: str):
        self.config = config
        self.store = Store(out_dir, config.storage.options)  # a folder or a URL: shards go there directly
        self.config_hash = config.hash()
        self.source = SourceStage(config.segment, config.seed, config.splits.heldout_fraction)
        self.stages = build_stages(config, out_dir)
        for stage in self.stages:
            if not stage.lazy_setup:
                stage.setup()

    def __call__(self, spec: ShardSpec) -> ShardSidecar:
        result = run_shard(spec, self.config, self.source, self.stages)
        return write_shard(self.store, result, self.config_hash)
