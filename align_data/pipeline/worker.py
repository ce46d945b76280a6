"""One worker's state: stages set up once, then any number of shards processed and written."""

from __future__ import annotations

from pathlib import Path

from align_data.config import BuildConfig
from align_data.pipeline.plan import ShardSpec
from align_data.pipeline.stages import build_stages, run_shard
from align_data.pipeline.writers import write_shard
from align_data.schemas.sidecar import ShardSidecar
from align_data.stages.source import SourceStage


class ShardWorker:
    """Holds the set-up stage chain; ``__call__`` turns a ShardSpec into written files and a sidecar."""

    def __init__(self, config: BuildConfig, out_dir: str):
        self.config = config
        self.out_dir = Path(out_dir)
        self.config_hash = config.hash()
        self.source = SourceStage(config.segment, config.seed, config.splits.heldout_fraction)
        self.stages = build_stages(config, out_dir)
        for stage in self.stages:
            if not stage.lazy_setup:
                stage.setup()

    def __call__(self, spec: ShardSpec) -> ShardSidecar:
        result = run_shard(spec, self.config, self.source, self.stages)
        return write_shard(self.out_dir, result, self.config_hash)
