"""The acoustics stage: trim, loudness, optional noise at a target SNR and reverberation, clipping guard."""

from align_data.stages.acoustics.stage import AcousticsStage

__all__ = ["AcousticsStage"]
