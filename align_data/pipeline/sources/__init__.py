"""Planning and reading sources from their metadata: txt/jsonl by byte range, Parquet by row group, hub datasets by
their own file list. A plan names the bytes or row groups each shard reads; no process reads the whole corpus."""

from align_data.pipeline.sources.slices import Piece, SourceSlice

__all__ = ["Piece", "SourceSlice"]
