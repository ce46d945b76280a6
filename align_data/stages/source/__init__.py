"""The source stage: documents → normalized, segmented, filtered, deduplicated, identified records."""

from align_data.stages.source.stage import Document, SourceStage

__all__ = ["Document", "SourceStage"]
