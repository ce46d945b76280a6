"""The paralinguistics stage: measured acoustic attributes and the DeSTA2 seed transcript."""

from align_data.stages.paralinguistics.stage import ParalinguisticsStage, seed_transcript

__all__ = ["ParalinguisticsStage", "seed_transcript"]
