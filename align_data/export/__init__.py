"""Export a finished build to the formats other speech-LLM trainers read: lhotse Shar, NeMo, BLSP, HF datasets."""

from align_data.export.driver import ExportSummary, export_corpus, formats

__all__ = ["ExportSummary", "export_corpus", "formats"]
