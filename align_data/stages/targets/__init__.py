"""The targets stage: prompts per task, an LLM client, parsed responses."""

from align_data.stages.targets.stage import TargetsStage

__all__ = ["TargetsStage"]
