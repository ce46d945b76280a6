"""BLSP-style adapter trainer that consumes align-data builds (imported only by the train/eval commands)."""

from align_data.trainer.checkpoint import load_adapter
from align_data.trainer.config import TrainConfig
from align_data.trainer.evaluate import evaluate
from align_data.trainer.loop import train

__all__ = ["TrainConfig", "evaluate", "load_adapter", "train"]
