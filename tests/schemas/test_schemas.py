import pyarrow as pa
import pytest

from align_data.errors import AlignDataError
from align_data.schemas import (
    RECORD_SCHEMA, AudioClip, Paralinguistics, Record, Segment, SourceRef, Target, Voice,
    check_schema_version, record_from_row, records_to_table,
)


def _record():
    return Record(
        id="t-000000001-000", shard_id=1, source=SourceRef("t", "doc", 0), text="Hi there friend",
        next_text="More.", task="interleaved",
        segments=(Segment("text", "Hi", 0, 2), Segment("speech", "there friend", 3, 15, 0)),
        audio=(AudioClip(b"fLaC-bytes", 16000, 3200),),
        voice=Voice("espeak", "en-us+f2", "female", "American", "en-us", 170.0, 50.0, 100.0),
        paralinguistics=Paralinguistics(0.2, 10.0, 200.0, 5.0, "normal", -20.0, "normal", "fast"),
        description="[00:00:00 - 00:00:00]: ...",
        targets=(Target("interleaved", "inserter-next", "", "More.", "corpus", "corpus", "corpus"),),
    )


def test_roundtrip_through_arrow():
    table = records_to_table([_record()], "abc")
    assert table.schema.equals(RECORD_SCHEMA, check_metadata=False)
    assert record_from_row(table.to_pylist()[0]) == _record()


def test_audio_is_hf_audio_storage():
    audio_type = RECORD_SCHEMA.field("audio").type.value_type
    assert [f.name for f in audio_type] == ["bytes", "path"]
    assert audio_type.field("bytes").type == pa.binary()


def test_schema_version_majors():
    check_schema_version("1.7", "x")
    check_schema_version(b"1.0", "x")
    with pytest.raises(AlignDataError, match="schema version 2.0"):
        check_schema_version("2.0", "shard.parquet")
    with pytest.raises(AlignDataError, match="no align-data schema version"):
        check_schema_version(None, "shard.parquet")
