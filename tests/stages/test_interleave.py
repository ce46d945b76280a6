import numpy as np

from align_data.config import InterleaveConfig
from align_data.schemas import Record, SourceRef
from align_data.stages.interleave import InterleaveStage, choose_task, speech_spans, to_segments


def _record(text, next_text="Next part.", rid="r-1"):
    return Record(id=rid, shard_id=0, source=SourceRef("t", "d", 0), text=text, next_text=next_text)


TEXT = "The quick brown fox jumps over the lazy dog while the farmer sleeps under an old oak tree today"


def test_segments_cover_text_in_order():
    cfg = InterleaveConfig(task_weights={"interleaved": 1.0}, min_span_words=2, max_span_words=4)
    out = InterleaveStage(cfg, seed=0)([_record(TEXT)])[0]
    assert out.task == "interleaved"
    assert " ".join(s.text for s in out.segments) == TEXT
    for s in out.segments:
        assert TEXT[s.char_start:s.char_end] == s.text
    speech = [s for s in out.segments if s.modality == "speech"]
    assert [s.audio_index for s in speech] == list(range(len(speech)))
    assert any(s.modality == "text" for s in out.segments) and speech


def test_speech_ratio_is_roughly_followed():
    rng = np.random.default_rng(0)
    for ratio in (0.3, 0.7):
        cfg = InterleaveConfig(speech_ratio=ratio, min_span_words=2, max_span_words=6)
        spoken = sum(b - a for _ in range(200) for a, b in speech_spans(60, cfg, rng))
        assert abs(spoken / (200 * 60) - ratio) < 0.15


def test_same_seed_same_spans_other_seed_differs():
    cfg = InterleaveConfig(task_weights={"interleaved": 1.0}, min_span_words=1, max_span_words=3)
    a = InterleaveStage(cfg, 0)([_record(TEXT)])[0].segments
    b = InterleaveStage(cfg, 0)([_record(TEXT)])[0].segments
    c = InterleaveStage(cfg, 7)([_record(TEXT)])[0].segments
    assert a == b and a != c


def test_interleaved_needs_following_text():
    rng = np.random.default_rng(0)
    assert choose_task({"interleaved": 1.0}, False, rng) is None
    assert all(choose_task({"interleaved": 1.0, "description": 1.0}, False, rng) == "description"
               for _ in range(20))
    out = InterleaveStage(InterleaveConfig(task_weights={"interleaved": 1.0}), 0)([_record(TEXT, None)])[0]
    assert out.filtered == "no_next_text" and out.task is None
    mixed = InterleaveConfig(task_weights={"interleaved": 1.0, "continuation": 0.1})
    out = InterleaveStage(mixed, 0)([_record(TEXT, None)])[0]
    assert out.task == "continuation" and len(out.segments) == 1


def test_whole_speech_for_other_tasks_and_single_word():
    seg = to_segments("Hello", [(0, 1)])
    assert seg[0].modality == "speech" and seg[0].text == "Hello"
    out = InterleaveStage(InterleaveConfig(task_weights={"description": 1.0}), 0)([_record(TEXT)])[0]
    assert [s.modality for s in out.segments] == ["speech"] and out.segments[0].text == TEXT
