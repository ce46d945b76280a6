import time
from pathlib import Path

import numpy as np
import pytest

from align_data.stages.base import RecordError
from align_data.stages.tts.isolated import IsolatedEngine

FACTORY = "tests.stages.fault_engines:FaultyEngine"


def test_hang_is_killed_crash_is_one_error_and_the_engine_recovers(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # the child imports tests.*
    engine = IsolatedEngine(FACTORY, timeout_s=2.0)
    try:
        engine.load()
        audio, rate = engine.synthesize("hello")
        assert rate == 16000 and np.allclose(audio, 0.1)
        t0 = time.perf_counter()
        with pytest.raises(RecordError) as hang:
            engine.synthesize("hang")
        assert hang.value.kind == "tts_timeout" and time.perf_counter() - t0 < 30
        with pytest.raises(RecordError) as crash:
            engine.synthesize("die")
        assert crash.value.kind == "tts_engine_crashed"
        assert engine.synthesize("again")[1] == 16000  # a fresh child took over
    finally:
        engine.close()


def test_real_neural_engine_through_the_child_matches_in_process():
    pytest.importorskip("hibari")
    from align_data.stages.tts.hibari import HibariEngine

    isolated = IsolatedEngine("align_data.stages.tts.hibari:HibariEngine", timeout_s=60)
    try:
        a, rate = isolated.synthesize("A short sentence for the test.", seed=1)
    finally:
        isolated.close()
    local = HibariEngine()
    b, _ = local.synthesize("A short sentence for the test.", seed=1)
    assert rate == 24000 and np.array_equal(a, b)
