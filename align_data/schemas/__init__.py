"""Record, error, sidecar and manifest schemas shared by the pipeline and the trainer."""

from align_data.schemas.record import (
    SCHEMA_VERSION,
    Acoustics,
    AudioClip,
    ClipQuality,
    ErrorInfo,
    Paralinguistics,
    Provenance,
    Quality,
    Record,
    Segment,
    SourceRef,
    Target,
    Voice,
)
from align_data.schemas.arrow import (
    RECORD_SCHEMA,
    check_schema_version,
    hf_features,
    record_from_row,
    records_to_table,
)

__all__ = [
    "SCHEMA_VERSION",
    "Acoustics",
    "AudioClip",
    "ClipQuality",
    "ErrorInfo",
    "Paralinguistics",
    "Provenance",
    "Quality",
    "Record",
    "Segment",
    "SourceRef",
    "Target",
    "Voice",
    "RECORD_SCHEMA",
    "check_schema_version",
    "hf_features",
    "record_from_row",
    "records_to_table",
]
