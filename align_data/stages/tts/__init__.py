"""The TTS stage and its engine backends."""

from align_data.stages.tts.stage import TTSStage

__all__ = ["TTSStage"]
