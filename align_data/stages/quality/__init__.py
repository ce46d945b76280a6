"""Quality: Whisper round-trip ASR with WER per clip and a threshold filter; checks of the LLM targets."""

from align_data.config import QualityConfig
from align_data.stages.base import Stage
from align_data.stages.quality.stage import QualityStage, Revoice, TargetChecksStage


def asr_gate(config: QualityConfig, revoice: Revoice | None = None) -> list[Stage]:
    """The ASR stage when ``quality.enabled``: it goes before the LLM, so a filtered clip costs no LLM call;
    ``revoice`` speaks a record over the threshold again (``quality.max_repairs``)."""
    return [QualityStage(config, revoice=revoice)] if config.enabled else []


def target_checks(config: QualityConfig) -> list[Stage]:
    """The target-checks stage when ``quality.target_filters`` names a check: it goes after the LLM."""
    return [TargetChecksStage(config)] if config.target_filters else []


__all__ = ["QualityStage", "TargetChecksStage", "asr_gate", "target_checks"]
