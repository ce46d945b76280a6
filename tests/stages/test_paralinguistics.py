import numpy as np

from align_data.config import ParalinguisticsConfig
from align_data.schemas import AudioClip, Record, Segment, SourceRef, Voice
from align_data.stages.paralinguistics import ParalinguisticsStage, seed_transcript
from align_data.stages.paralinguistics.stage import measure
from align_data.stages.tts.audio import encode_flac

RATE = 16000


def _tone(freq, seconds, amp):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_measures_known_tone():
    p = measure(_tone(220.0, 2.0, 0.1), RATE, n_words=6, cfg=ParalinguisticsConfig(), gender="female")
    assert abs(p.duration_s - 2.0) < 1e-3
    assert abs(p.f0_mean_hz - 220.0) < 3 and p.f0_std_hz < 3
    assert abs(p.rms_dbfs - 20 * np.log10(0.1 / np.sqrt(2))) < 0.5
    assert p.speech_rate_wps == 3.0 and p.pitch_level == "normal"
    low = measure(_tone(110.0, 2.0, 0.01), RATE, 2, ParalinguisticsConfig(), "female")
    assert low.pitch_level == "low" and low.volume_level == "low" and low.speed_level == "low"
    assert measure(_tone(110.0, 2.0, 0.3), RATE, 2, ParalinguisticsConfig(), "male").pitch_level == "normal"


def test_stage_writes_seed_transcript():
    voice = Voice("espeak", "en-us+f2", "female", "American", "en-us", 170, 50, 100)
    clip = _tone(230.0, 3.2, 0.2)
    record = Record(id="r", shard_id=0, source=SourceRef("t", "d", 0), text="Hello there my dear friend",
                    task="description", segments=(Segment("speech", "Hello there my dear friend", 0, 26, 0),),
                    audio=(AudioClip(encode_flac(clip, RATE), RATE, clip.size),), voice=voice)
    out = ParalinguisticsStage(ParalinguisticsConfig())([record])[0]
    assert out.live
    assert out.description.startswith('[00:00:00 - 00:00:03]: "Hello there my dear friend" (Gender: Female, '
                                      'Accent: American, Pitch: normal')
    assert out.description.endswith("Duration: 3s)")
    assert seed_transcript("x", voice, out.paralinguistics) .count("Emotion") == 0


def test_record_without_audio_errors():
    record = Record(id="r", shard_id=0, source=SourceRef("t", "d", 0), text="x")
    out = ParalinguisticsStage(ParalinguisticsConfig())([record])[0]
    assert out.error.kind == "no_audio"
