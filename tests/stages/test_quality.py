"""Quality stage: text normalization and WER, batching and the WER filter (fake ASR), target checks, and the real
whisper-base round trip on espeak-ng speech (slow)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import typing
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from align_data.config import QualityConfig, build_config_from_dict
from align_data.errors import AlignDataError
from align_data.schemas import AudioClip, ErrorInfo, Record, Segment, SourceRef, Target
from align_data.stages.quality import QualityStage, TargetChecksStage, asr_gate, target_checks
from align_data.stages.quality.checks import TARGET_CHECKS, check_target
from align_data.stages.quality.normalize import normalize_words, wer, word_errors
from align_data.stages.base import RecordError
from align_data.stages.quality.stage import HIGH_WER, TOO_LONG, score
from align_data.stages.tts.audio import encode_flac, to_mono_16k

RATE = 16000


# --- normalization and WER -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("Hello, World!", ["hello", "world"]),
    ("The 12 bus came at 6:45.", ["the", "twelve", "bus", "came", "at", "six", "forty", "five"]),
    ("In 1612 and 1905, 2,500 people", ["in", "sixteen", "twelve", "and", "nineteen", "oh", "five", "two",
                                         "thousand", "five", "hundred", "people"]),
    ("$5 or 50% on the 21st", ["five", "dollars", "or", "fifty", "percent", "on", "the", "twenty", "first"]),
    ("It's 3.5 km—don't", ["its", "three", "point", "five", "km", "dont"]),
    ("the harbour's colour", ["the", "harbors", "color"]),
    ("rock & roll / blues", ["rock", "and", "roll", "blues"]),
    ("Café  déjà-vu", ["café", "déjà", "vu"]),
    ("105 007", ["one", "hundred", "five", "zero", "zero", "seven"]),
])
def test_normalize_words(text, words):
    assert normalize_words(text) == words


def test_word_errors_counts_substitutions_deletions_insertions():
    assert word_errors(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert word_errors(["a", "b", "c"], ["a", "x", "c"]) == 1
    assert word_errors(["a", "b", "c"], ["a", "c"]) == 1
    assert word_errors(["a", "b", "c"], ["a", "b", "c", "d", "e"]) == 2
    assert word_errors([], ["a"]) == 1 and word_errors(["a", "b"], []) == 2


def test_wer_compares_after_the_same_normalization_on_both_sides():
    assert wer("Fifteen minutes late, she said.", "15 minutes late she said") == (0.0, 0, 5)
    rate, errors, ref = wer("The cat sat on the mat", "the cat sat on a hat")
    assert (errors, ref) == (2, 6) and rate == pytest.approx(2 / 6)
    assert wer("", "noise")[0] == 1.0 and wer("", "")[0] == 0.0


def test_record_wer_weights_clips_by_their_words():
    q = score("m", [(0, "one two three four five six seven eight", "one two three four five six seven eight"),
                    (1, "nine ten", "something else entirely")])
    assert [c.wer for c in q.clips] == [0.0, 1.5]
    assert q.wer == pytest.approx(3 / 10)  # 3 errors over 10 reference words, not the mean 0.75


# --- the stage with a fake transcriber -------------------------------------------------------------------------

def _clip(seconds: float, seed: int = 0) -> AudioClip:
    samples = (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)
    return AudioClip(encode_flac(samples, RATE), RATE, samples.size)


def _record(rid: str, spans: list[tuple[str, float]], task: str = "interleaved") -> Record:
    text = " ".join(t for t, _ in spans)
    segments, start = [], 0
    for i, (span, _) in enumerate(spans):
        segments.append(Segment("speech", span, start, start + len(span), i))
        start += len(span) + 1
    return Record(id=rid, shard_id=0, source=SourceRef("t", rid, 0), text=text, task=task,
                  segments=tuple(segments), audio=tuple(_clip(s, i) for i, (_, s) in enumerate(spans)))


class FakeASR:
    """Answers by clip length (each test clip has its own), and records the batches it was given."""

    def __init__(self, answers: dict[int, str], fail_on: int | None = None):
        self.answers, self.fail_on, self.batches = answers, fail_on, []

    def __call__(self, clips):
        lengths = [len(c) for c in clips]
        self.batches.append(lengths)
        if self.fail_on in lengths:
            raise RuntimeError("out of memory")
        return [self.answers[n] for n in lengths]


def test_stage_batches_by_length_records_quality_and_filters_with_a_reason():
    good = _record("good", [("The alarm rang at seven", 1.3), ("and the kitchen was dark", 1.1)])
    bad = _record("bad", [("Rain fell all afternoon over the town", 1.7)])
    done = Record(id="done", shard_id=0, source=SourceRef("t", "x", 0), text="x",
                  error=ErrorInfo("tts", "tts_silent", "silent"))
    asr = FakeASR({int(1.3 * RATE): "the alarm rang at 7", int(1.1 * RATE): "and the kitchen was dark",
                   int(1.7 * RATE): "brain felt a lot of tea"})
    stage = QualityStage(QualityConfig(enabled=True, wer_threshold=0.5, batch_size=2), transcribe=asr, asr_model="fake")
    out = stage([good, bad, done])
    assert asr.batches == [[int(1.1 * RATE), int(1.3 * RATE)], [int(1.7 * RATE)]]  # sorted by length, <= 2 each
    assert out[0].live and out[0].quality.wer == 0.0
    assert [(c.audio_index, c.asr_text, c.wer) for c in out[0].quality.clips] == [
        (0, "the alarm rang at 7", 0.0), (1, "and the kitchen was dark", 0.0)]
    assert out[1].filtered == HIGH_WER and out[1].quality.wer > 0.5  # keeps its measures with its reason
    assert out[1].quality.clips[0].asr_text == "brain felt a lot of tea"
    assert out[2] is done  # failed records pass through untouched
    assert stage.take_usage() == {"asr_clips": 3, "asr_batches": 2, "asr_audio_ms": 4100}


def test_threshold_decides_what_is_filtered():
    record = _record("r", [("one two three four", 1.0)])
    asr = FakeASR({RATE: "one two three for"})  # WER 0.25
    assert QualityStage(QualityConfig(wer_threshold=0.25), transcribe=asr)([record])[0].live
    assert QualityStage(QualityConfig(wer_threshold=0.2), transcribe=asr)([record])[0].filtered == HIGH_WER


def test_a_failed_batch_fails_only_its_records():
    records = [_record("a", [("alpha beta", 1.0)]), _record("b", [("gamma delta", 2.0)])]
    asr = FakeASR({RATE: "alpha beta", 2 * RATE: "gamma delta"}, fail_on=2 * RATE)
    out = QualityStage(QualityConfig(batch_size=1), transcribe=asr)(records)
    assert out[0].live and out[0].quality.wer == 0.0
    assert out[1].error.stage == "quality" and out[1].error.kind == "asr_failed"
    assert "out of memory" in out[1].error.message


def test_clip_over_the_window_is_filtered_and_bad_audio_is_an_error():
    long = _record("long", [("a long clip", 3.0)])
    broken = _record("broken", [("broken clip", 1.0)])
    broken = dataclasses.replace(broken, audio=(AudioClip(b"not flac", RATE, 10),))
    asr = FakeASR({})
    out = QualityStage(QualityConfig(), transcribe=asr, max_samples=2 * RATE)([long, broken])
    assert out[0].filtered == TOO_LONG and out[1].error.kind == "bad_audio"
    assert asr.batches == []  # nothing left to transcribe


def test_stages_only_when_configured():
    assert asr_gate(QualityConfig()) == [] and target_checks(QualityConfig(target_filters=[])) == []
    assert [s.name for s in asr_gate(QualityConfig(enabled=True))] == ["quality"]
    assert [s.name for s in target_checks(QualityConfig(target_filters=["echo"]))] == ["target_checks"]


def test_echo_and_over_length_answers_are_filtered_by_default():
    (stage,) = target_checks(QualityConfig())
    assert stage.filters == ("echo", "over_length", "unfaithful")


def test_build_stages_put_the_gate_before_the_llm_and_the_checks_after(corpus_file):
    from align_data.pipeline.stages import build_stages, check_chain
    from tests.conftest import make_config

    plain = [s.name for s in build_stages(make_config(corpus_file, quality={"target_filters": []}))]
    assert "quality" not in plain and "target_checks" not in plain
    stages = build_stages(make_config(corpus_file, quality={"enabled": True, "target_filters": ["echo"]}))
    names = [s.name for s in stages]
    assert names.index("paralinguistics") < names.index("quality") < names.index("targets") < names.index("target_checks")
    check_chain(stages)  # what each reads is written before it


def test_config_fields_are_documented_and_strict():
    for name, field in QualityConfig.model_fields.items():
        assert field.description, name
    allowed = typing.get_args(typing.get_args(QualityConfig.model_fields["target_filters"].annotation)[0])
    assert set(allowed) == set(TARGET_CHECKS) - {"empty"}  # the targets stage always filters empty answers
    with pytest.raises(AlignDataError, match="quality.target_filters"):
        build_config_from_dict({"sources": [{"name": "x", "path": "x"}], "quality": {"target_filters": ["rude"]}})
    with pytest.raises(AlignDataError, match="quality.wer_treshold"):
        build_config_from_dict({"sources": [{"name": "x", "path": "x"}], "quality": {"wer_treshold": 0.3}})


# --- target checks ---------------------------------------------------------------------------------------------

def _target(response: str, task: str = "continuation", finish: str = "stop", prompt: str = "Continue the text.",
            prompt_id: str = "continue") -> Target:
    return Target(task, prompt_id, prompt, response, "m", "b", finish)


TEXT = "Maya filled the kettle and waited by the window for the first light."


@pytest.mark.parametrize("response, failed", [
    ("She made tea and watched the sun rise over the hills.", ()),
    ("", ("empty",)),
    ("Maya filled the kettle and waited by the window.", ("echo",)),
    ("Then Maya filled the kettle and waited by the window.", ("echo",)),  # one new word is still an echo
    ("The sun came up and Maya filled the kettle again.", ()),
    ("She waited and waited, and then she waited no more.", ()),
    ("and then and then and then and then", ("repeated_ngrams",)),
    ("El perro corre en el parque con su dueño cada mañana.", ("non_english",)),
    ("Собака бежит по парку", ("non_english",)),
    ("kettle, window, light, morning", ()),  # a keyword list is not judged by function words
])
def test_check_target(response, failed):
    assert check_target(_target(response), TEXT, None) == failed


def test_over_length_and_translation_prompts():
    assert check_target(_target("She made tea and", finish="length"), TEXT, None) == ("over_length",)
    french = _target("Maya remplit la bouilloire et attendit près de la fenêtre.", task="translate",
                     prompt="Translate the text into French.", prompt_id="translate-1")
    assert check_target(french, TEXT, None) == ()  # not English, but English was not asked


def test_an_answer_that_repeats_the_instruction_is_an_echo():
    parrot = _target("Continue the following text in a coherent and engaging style.",
                     prompt="Continue the following text in a coherent and engaging style with less than 40 words.")
    assert check_target(parrot, TEXT, None) == ("echo",)


def test_description_echo_is_judged_against_the_seed_transcript():
    seed = '[00:00:00 - 00:00:03]: "Maya filled the kettle" (Gender: Female, Accent: American, Pitch: high)'
    copy = _target('00:00:00 - 00:00:03: "Maya filled the kettle" (Gender: Female, Accent: American, Pitch: high)',
                   task="description")
    answer = _target("A woman with an American accent says that Maya filled the kettle.", task="description")
    assert "echo" in check_target(copy, "Maya filled the kettle", seed)
    assert check_target(answer, "Maya filled the kettle", seed) == ()


def test_target_checks_stage_filters_only_the_configured_checks():
    def rec(response: str) -> Record:
        return Record(id=response[:5], shard_id=0, source=SourceRef("t", "d", 0), text=TEXT, task="continuation",
                      targets=(_target(response),))
    loop, echo = rec("and then and then and then and then"), rec("Maya filled the kettle and waited by the window.")
    out = TargetChecksStage(QualityConfig(target_filters=["repeated_ngrams"]))([loop, echo])
    assert out[0].filtered == "target_repeated_ngrams" and out[1].live


# --- a whole build with a fake Whisper: counts add up, filtered records carry their reason ----------------------

class _SilentWhisper:
    """Stands in for WhisperTranscriber: hears nothing, so every clip has WER 1."""

    def __init__(self, model, device, language, threads):
        self.name, self.max_samples = "silent", 30 * RATE

    def transcribe(self, clips):
        return ["" for _ in clips]


@pytest.mark.parametrize("threshold, filtered", [(0.5, True), (1.0, False)])
def test_build_with_the_gate_keeps_counts_and_reasons(tmp_path, corpus_file, monkeypatch, threshold, filtered):
    import datasets

    from align_data.pipeline.build import build
    from align_data.pipeline.validate import validate_build
    from align_data.stages.quality import asr
    from tests.conftest import make_config

    monkeypatch.setattr(asr, "WhisperTranscriber", _SilentWhisper)
    config = make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}},
                         quality={"enabled": True, "wer_threshold": threshold})
    out = tmp_path / "out"
    m = build(config, out).manifest
    assert m["rows"] + m["errors"] + m["filtered"] == m["candidates"]
    assert m["stage_order"].index("quality") < m["stage_order"].index("targets")  # no LLM call for a filtered clip
    gated = m["stages"]["quality"]["total"]
    assert gated > 0 and m["stages"]["quality"]["usage"]["asr_clips"] >= gated
    assert validate_build(out) == []
    lines = [json.loads(line) for p in sorted((out / "filtered").glob("*.jsonl")) for line in p.read_text().splitlines()]
    high = [line for line in lines if line["kind"] == HIGH_WER]
    if filtered:
        assert m["rows"] == 0 and m["stages"]["quality"]["filtered"] == {HIGH_WER: gated}
        assert len(high) == gated and all(line["stage"] == "quality" for line in high)
    else:
        assert m["rows"] == gated and not high
        rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
        for row in rows:
            speech = [s for s in row["segments"] if s["modality"] == "speech"]
            assert row["quality"]["asr_model"] == "silent" and row["quality"]["wer"] == 1.0
            assert [c["audio_index"] for c in row["quality"]["clips"]] == [s["audio_index"] for s in speech]
        ds = datasets.load_dataset("parquet", data_files=str(out / "shards/*.parquet"), split="train")
        assert ds[0]["quality"]["wer"] == 1.0


# --- the real whisper-base round trip ---------------------------------------------------------------------------

def _espeak(text: str, tmp_path: Path, voice: str = "en-us") -> AudioClip:
    import soundfile as sf

    wav = tmp_path / "clip.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
    samples, rate = sf.read(wav, dtype="float32")
    samples = to_mono_16k(samples, rate)
    return AudioClip(encode_flac(samples, RATE), RATE, samples.size)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_real_whisper_clean_clip_low_mismatched_transcript_high(tmp_path):
    spoken = "The quick brown fox jumps over the lazy dog."
    clip = _espeak(spoken, tmp_path)

    def record(rid: str, reference: str) -> Record:
        return Record(id=rid, shard_id=0, source=SourceRef("t", rid, 0), text=reference, task="continuation",
                      segments=(Segment("speech", reference, 0, len(reference), 0),), audio=(clip,))

    stage = QualityStage(QualityConfig(enabled=True, wer_threshold=0.5, batch_size=4, device="cpu"))
    clean, mismatched = stage([record("clean", spoken),
                               record("wrong", "Scientists measured the temperature of the lake every morning.")])
    assert clean.live and clean.quality.wer <= 0.25, clean.quality
    assert mismatched.filtered == HIGH_WER and mismatched.quality.wer >= 0.8, mismatched.quality
    assert clean.quality.clips[0].asr_text == mismatched.quality.clips[0].asr_text  # the same audio, heard once each
    assert clean.quality.asr_model == "whisper-base (embedded)"


def test_quality_column_round_trips_and_old_rows_read_as_none():
    from align_data.schemas import SCHEMA_VERSION, records_to_table
    from align_data.schemas.arrow import record_from_row, record_to_row

    record = dataclasses.replace(_record("r", [("one two", 1.0)]),
                                 quality=score("whisper", [(0, "one two", "one too")]))
    table = records_to_table([record], "hash")
    assert table.schema.field("quality").nullable and SCHEMA_VERSION == "1.4"
    back = record_from_row(table.to_pylist()[0])
    assert back.quality == record.quality and back.quality.clips[0].asr_text == "one too"
    old = record_to_row(record)
    del old["quality"]  # a row of a 1.1 shard
    assert record_from_row(old).quality is None
    assert records_to_table([dataclasses.replace(record, quality=None)], "h").to_pylist()[0]["quality"] is None


# --- re-voicing a clip over the threshold ------------------------------------------------------------------------

def _revoicer(lengths_by_attempt: dict[int, float], fail_at: int | None = None):
    """A fake re-voicing (fault injection only): attempt k gives the record a clip of its own length and voice."""
    from align_data.schemas import Voice

    calls = []

    def revoice(record, attempt, tried):
        calls.append((record.id, attempt, tried))
        if attempt == fail_at:
            raise RecordError("tts_engine_failed", "the engine crashed")
        voice = Voice("espeak", f"v{attempt}", "male", "American", "en")
        return dataclasses.replace(record, audio=(_clip(lengths_by_attempt[attempt]),), voice=voice,
                                   provenance=dataclasses.replace(record.provenance, tts_attempt=attempt))
    return revoice, calls


def test_a_clip_over_the_threshold_is_spoken_again_by_another_voice_before_it_is_filtered():
    from align_data.schemas import Voice

    first = dataclasses.replace(_record("a", [("the cat sat on the mat", 1.0)]),
                                voice=Voice("espeak", "v0", "male", "American", "en"))
    good = _record("b", [("dogs bark at night", 1.5)])
    asr = FakeASR({16000: "garbled words here", 24000: "dogs bark at night", 17600: "nothing alike",
                   19200: "the cat sat on the mat"})
    revoice, calls = _revoicer({1: 1.1, 2: 1.2})
    stage = QualityStage(QualityConfig(enabled=True, wer_threshold=0.5, max_repairs=3), transcribe=asr,
                         asr_model="fake", revoice=revoice)
    out = stage([first, good])
    assert out[1].live and out[1].provenance.repaired == ()
    assert out[0].live and out[0].voice.voice_id == "v2" and out[0].quality.wer == 0.0
    assert out[0].provenance.repaired == ("high_wer", "high_wer") and out[0].provenance.tts_attempt == 2
    assert [(rid, attempt, sorted(v for _, v in tried)) for rid, attempt, tried in calls] == \
        [("a", 1, ["v0"]), ("a", 2, ["v0", "v1"])]  # each attempt avoids the voices already heard
    usage = stage.take_usage()
    assert usage["repairs:high_wer"] == 2 and usage["repaired"] == 1 and usage["asr_clips"] == 4


def test_re_voicing_is_bounded_and_a_failing_voice_leaves_the_record_filtered():
    from align_data.schemas import Voice

    record = dataclasses.replace(_record("a", [("the cat sat on the mat", 1.0)]),
                                 voice=Voice("espeak", "v0", "male", "American", "en"))
    asr = FakeASR({16000: "garbled words here", 17600: "nothing alike", 19200: "still nothing"})
    revoice, calls = _revoicer({1: 1.1, 2: 1.2})
    stage = QualityStage(QualityConfig(enabled=True, wer_threshold=0.5, max_repairs=2), transcribe=asr,
                         revoice=revoice)
    (out,) = stage([record])
    assert out.filtered == HIGH_WER and len(calls) == 2 and stage.take_usage()["repairs_exhausted"] == 1
    revoice, calls = _revoicer({}, fail_at=1)
    (out,) = QualityStage(QualityConfig(enabled=True, wer_threshold=0.5), transcribe=asr, revoice=revoice)([record])
    assert out.filtered == HIGH_WER and out.voice.voice_id == "v0" and len(calls) == 1
    (out,) = QualityStage(QualityConfig(enabled=True, wer_threshold=0.5, max_repairs=0), transcribe=asr,
                          revoice=_revoicer({1: 1.1})[0])([record])
    assert out.filtered == HIGH_WER and out.provenance.repaired == ()


@pytest.mark.slow
def test_a_real_build_re_voices_clips_whisper_cannot_follow(tmp_path, corpus_file):
    """A Hungarian espeak voice reading English is mostly garbled for whisper-base: such rows are spoken again by
    the pool's English voice and kept, their voice columns and seed transcript describing the voice kept."""
    from align_data.pipeline.build import build
    from tests.conftest import make_config

    voices = [{"backend": "espeak", "id": "hu+m3", "gender": "male", "accent": "Hungarian", "language": "hu",
               "weight": 50},
              {"backend": "espeak", "id": "en-us+f2", "gender": "female", "accent": "American", "language": "en-us"}]
    config = make_config(corpus_file, interleave={"task_weights": {"interleaved": 1.0}},
                         tts={"voices": voices, "rate_range": [150, 160]},
                         quality={"enabled": True, "wer_threshold": 0.5, "max_repairs": 2})
    out = tmp_path / "out"
    build(config, out)
    manifest = json.loads((out / "manifest.json").read_text())
    usage = manifest["stages"]["quality"]["usage"]
    assert usage.get("repairs:high_wer", 0) >= 1 and usage.get("repaired", 0) >= 1, usage
    rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    revoiced = [r for r in rows if r["provenance"]["repaired"]]
    assert revoiced, "no kept row was re-voiced"
    for row in revoiced:
        assert row["voice"]["voice_id"] == "en-us+f2" and row["provenance"]["tts_attempt"] >= 1
        assert row["quality"]["wer"] <= 0.5 and "Accent: American" in row["description"]
        assert set(row["provenance"]["repaired"]) == {"high_wer"}
    assert manifest["rows"] + manifest["errors"] + manifest["filtered"] == manifest["candidates"]


# --- faithfulness in the target checks: attributes and content copied from a shown example -----------------------

def test_a_description_that_retells_a_shown_example_is_unfaithful_content():
    from align_data.stages.quality.checks import copied_content

    example = "Class, put your books away, the science test starts now and you have forty minutes."
    clip = "It tastes even better the next day."
    copied = copied_content("A woman tells a class to put their books away because it tastes even better.", clip,
                            [example])
    assert copied is not None and copied.attribute == "content" and copied.said in {"class", "books", "books away"}
    assert copied_content("A woman says it tastes even better the next day.", clip, [example]) is None
    assert copied_content("A woman says the class test starts now.", "The class test starts now.", [example]) is None
    assert copied_content("A woman tells a class to put their books away.", clip, []) is None  # nothing was shown
    trigram = copied_content("He says the museum opens at nine on weekdays.", "We open late.",
                             ["The museum opens at nine on weekdays."])
    assert trigram is not None and trigram.said == "the museum opens"  # the first copied 3-gram


def test_target_checks_name_the_contradicted_attributes_and_count_them_per_attribute():
    from align_data.schemas import Paralinguistics, Provenance, Voice
    from align_data.stages.targets.prompts import catalog

    pool = catalog()["description"]["shots"]
    index = next(i for i, s in enumerate(pool) if "books away" in s["seed"])
    para = Paralinguistics(duration_s=2.0, speech_rate_wps=3.0, f0_mean_hz=120.0, f0_std_hz=10.0,
                           pitch_level="normal", rms_dbfs=-20.0, volume_level="normal", speed_level="normal")
    base = Record(id="d", shard_id=0, source=SourceRef("t", "d", 0), text="It tastes even better the next day.",
                  task="description", voice=Voice("espeak", "en+m1", "male", "British", "en-gb"),
                  paralinguistics=para, description="seed",
                  provenance=Provenance(shots=f"description:{index}"))
    answers = {"A man with a British accent says it tastes even better the next day.": None,
               "A woman tells a class it tastes even better the next day.": {"unfaithful:gender",
                                                                             "unfaithful:content"},
               "A man with a Scottish accent says quietly that it tastes better the next day.": {
                   "unfaithful:accent", "unfaithful:volume"}}
    for answer, expected in answers.items():
        record = dataclasses.replace(base, targets=(_target(answer, task="description"),))
        stage = TargetChecksStage(QualityConfig())
        (out,) = stage([record])
        if expected is None:
            assert out.live and stage.take_usage() == {}
        else:
            assert out.filtered == "target_unfaithful" and set(stage.take_usage()) == expected, stage.take_usage()
            assert all(key.split(":")[1] in out.filter_note for key in expected), out.filter_note
