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


def test_provenance_round_trips_and_rows_of_older_shards_read_as_empty():
    import dataclasses

    from align_data.schemas import Provenance, Record, SourceRef, records_to_table
    from align_data.schemas.arrow import record_from_row, record_to_row

    provenance = Provenance(license="CC-BY-4.0", tts_engine="espeak-ng 1.51", tts_seed=7, tts_attempt=1,
                            llm_seed=11, llm_attempt=2, llm_temperature=0.7, llm_top_p=1.0, llm_max_new_tokens=40,
                            shots="description:3,description:9", repaired=("high_wer", "unfaithful", "echo+unfaithful"))
    record = Record(id="r", shard_id=0, source=SourceRef("t", "d", 0), text="x", provenance=provenance)
    row = records_to_table([record], "h").to_pylist()[0]
    assert record_from_row(row).provenance == provenance
    old = record_to_row(record)
    del old["provenance"]  # a row of a 1.2 shard
    assert record_from_row(old).provenance == Provenance()
    assert record_from_row(records_to_table([dataclasses.replace(record, provenance=Provenance())], "h")
                           .to_pylist()[0]).provenance == Provenance()
