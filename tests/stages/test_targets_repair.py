"""Repair before filter: an answer that fails a filtering check is asked again (new seed, other shots, the repair
temperature) up to quality.max_repairs times; the first that passes is kept and its provenance names the attempt."""

from __future__ import annotations

import dataclasses

from align_data.config import LLMConfig, QualityConfig
from align_data.schemas import Paralinguistics, Record, SourceRef, Voice
from align_data.stages.base import RecordError
from align_data.stages.quality import TargetChecksStage
from align_data.stages.targets import TargetsStage
from align_data.stages.targets.cache import ResponseCache
from align_data.stages.targets.client import CachedClient, Completion
from align_data.stages.targets.stage import RepairPolicy, record_seed

MALE = Voice("espeak", "en-gb-x-gbclan+m3", "male", "Northern English", "en-gb")
PARA = Paralinguistics(duration_s=4.0, speech_rate_wps=2.7, f0_mean_hz=120.0, f0_std_hz=15.0, pitch_level="normal",
                       rms_dbfs=-20.0, volume_level="normal", speed_level="normal")
SEED = ('[00:00:00 - 00:00:04]: "The bus timetable was checked." (Gender: Male, Accent: Northern English, '
        'Pitch: normal, Speed: normal, Volume: normal, Duration: 4s)')
WRONG = "A woman says, slowly and quietly, that the bus timetable is checked."
RIGHT = "A man with a Northern English accent says at an even pace that someone checked the bus timetable."


def _record(rid: str = "r-1", task: str = "description") -> Record:
    return Record(id=rid, shard_id=3, source=SourceRef("t", "d", 0), text="The bus timetable was checked.",
                  next_text="Then it rained.", task=task, voice=MALE, paralinguistics=PARA, description=SEED)


class ScriptedClient:
    """Fault injection only: one scripted answer per prompt, in call order; records what each call was asked."""

    model_name = "scripted"
    backend = "scripted"

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts, self.seeds, self.temperatures = [], [], []

    def complete(self, prompts, sampling, seeds):
        self.prompts.append([p.text for p in prompts])
        self.seeds.append(list(seeds))
        self.temperatures.append(sampling.temperature)
        out = []
        for _ in prompts:
            answer = self.answers.pop(0)
            out.append(answer if isinstance(answer, RecordError) else Completion(answer, "stop", 10, 5))
        return out


POLICY = RepairPolicy.from_config(QualityConfig())  # empty, echo, over_length, unfaithful; 3 repairs at 0.7


def test_policy_repairs_what_would_filter():
    assert POLICY.checks == ("empty", "echo", "over_length", "unfaithful") and POLICY.max_repairs == 3
    assert RepairPolicy.from_config(QualityConfig(target_filters=[], max_repairs=1)).checks == ("empty",)


def test_unfaithful_answer_is_asked_again_with_other_shots_and_the_passing_one_is_kept():
    client = ScriptedClient([WRONG, RIGHT])
    stage = TargetsStage(LLMConfig(temperature=0.0), seed=0, client=client, repair=POLICY)
    (out,) = stage([_record()])
    assert out.live and out.targets[0].response == RIGHT
    first, repair = client.prompts[0][0], client.prompts[1][0]
    assert first != repair  # other examples ...
    assert first.rsplit("Audio:", 1)[1] == repair.rsplit("Audio:", 1)[1]  # the same question about the same clip
    assert client.seeds == [[record_seed(0, out, 0)], [record_seed(0, out, 1)]]
    assert client.temperatures == [0.0, 0.7]
    p = out.provenance
    assert (p.llm_attempt, p.repaired, p.llm_temperature, p.llm_seed) == (1, ("unfaithful",), 0.7, record_seed(0, out, 1))
    assert p.shots and p.shots.startswith("description:")
    usage = stage.take_usage()
    assert usage["repairs:unfaithful"] == 1 and usage["repair_calls"] == 1 and usage["repaired"] == 1
    assert usage["calls"] == 2 and "repairs_exhausted" not in usage


def test_a_record_still_failing_after_max_repairs_is_filtered_with_the_contradicted_attributes():
    client = ScriptedClient([WRONG] * 3)
    stage = TargetsStage(LLMConfig(), seed=0, client=client,
                         repair=RepairPolicy.from_config(QualityConfig(max_repairs=2)))
    (out,) = stage([_record()])
    assert len(client.prompts) == 3 and out.provenance.llm_attempt == 2
    assert out.provenance.repaired == ("unfaithful", "unfaithful")
    assert stage.take_usage()["repairs_exhausted"] == 1
    checks = TargetChecksStage(QualityConfig())
    (filtered,) = checks([out])
    assert filtered.filtered == "target_unfaithful"
    assert "gender" in filtered.filter_note and "speed" in filtered.filter_note and "volume" in filtered.filter_note
    assert checks.take_usage() == {"unfaithful:gender": 1, "unfaithful:speed": 1, "unfaithful:volume": 1}


def test_only_failing_records_are_asked_again_and_empty_answers_too():
    client = ScriptedClient(["It rained all night over the hills.", "", "By noon the sun came out again."])
    stage = TargetsStage(LLMConfig(), seed=0, client=client, repair=POLICY)
    out = stage([_record("a", "continuation"), _record("b", "continuation"), _record("c", "interleaved")])
    assert [len(p) for p in client.prompts] == [2, 1]  # the repair batch holds the empty answer only
    assert out[0].provenance.llm_attempt == 0 and out[1].provenance.repaired == ("empty",)
    assert out[1].targets[0].response == "By noon the sun came out again." and out[1].live
    assert out[2].targets[0].backend == "corpus" and out[2].provenance.llm_seed is None


def test_no_repairs_when_max_repairs_is_zero_or_the_check_does_not_filter():
    client = ScriptedClient([WRONG])
    (out,) = TargetsStage(LLMConfig(), seed=0, client=client,
                          repair=RepairPolicy.from_config(QualityConfig(max_repairs=0)))([_record()])
    assert len(client.prompts) == 1 and out.provenance.repaired == ()
    client = ScriptedClient([WRONG])
    (out,) = TargetsStage(LLMConfig(), seed=0, client=client,
                          repair=RepairPolicy.from_config(QualityConfig(target_filters=[])))([_record()])
    assert len(client.prompts) == 1 and out.live  # nothing filters unfaithful answers here, so none is repaired


def test_a_repair_that_fails_keeps_the_answer_it_had():
    client = ScriptedClient([WRONG, RecordError("llm_timeout", "no answer in 30 s")])
    (out,) = TargetsStage(LLMConfig(), seed=0, client=client, repair=POLICY)([_record()])
    assert out.error is None and out.targets[0].response == WRONG and out.provenance.llm_attempt == 0
    assert len(client.prompts) == 2  # one repair asked; the timeout ended its record's repairs


def test_repairs_are_deterministic():
    runs = []
    for _ in range(2):
        client = ScriptedClient([WRONG, WRONG, RIGHT])
        (out,) = TargetsStage(LLMConfig(), seed=5, client=client, repair=POLICY)([_record()])
        runs.append((out, client.prompts, client.seeds))
    assert runs[0] == runs[1] and runs[0][0].provenance.llm_attempt == 2
    assert len({p[0] for p in runs[0][1]}) == 3  # each attempt showed other examples


def test_the_cache_keys_include_the_attempt(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    inner = ScriptedClient([WRONG, RIGHT])
    client = CachedClient(inner, cache)
    stage = TargetsStage(LLMConfig(), seed=0, client=client, repair=POLICY)
    (first,) = stage([_record()])
    assert len(cache) == 2  # attempt 0 and attempt 1 kept apart
    again = TargetsStage(LLMConfig(), seed=0, client=CachedClient(ScriptedClient([]), cache), repair=POLICY)
    (second,) = again([_record()])
    assert second == first and again.take_usage()["cache_hits"] == 2  # a resumed build asks nothing again
    assert dataclasses.replace(second, targets=()) == dataclasses.replace(first, targets=())


def test_a_repair_never_shows_an_example_an_earlier_attempt_showed():
    from align_data.stages.targets.prompts import shot_indices

    client = ScriptedClient([WRONG, WRONG, WRONG, WRONG])
    stage = TargetsStage(LLMConfig(), seed=0, client=client, repair=POLICY)
    (out,) = stage([_record()])
    shown = []
    for (prompt,) in client.prompts:
        shown.append({i for i, shot in enumerate(_description_pool()) if shot["answer"] in prompt})
    assert len(shown) == 4 and all(len(s) == 3 for s in shown)
    assert all(not (a & b) for i, a in enumerate(shown) for b in shown[:i])  # 4 attempts, 12 distinct examples
    assert shot_indices(out.provenance.shots) == shown[-1]


def _description_pool():
    from align_data.stages.targets.prompts import catalog

    return catalog()["description"]["shots"]


def test_the_last_repair_of_a_description_starts_the_answer_with_its_speaker():
    client = ScriptedClient([WRONG, WRONG, " says that someone checked the bus timetable."])
    stage = TargetsStage(LLMConfig(), seed=0, client=client,
                         repair=RepairPolicy.from_config(QualityConfig(max_repairs=2)))
    (out,) = stage([_record()])
    first, last = client.prompts[0][0], client.prompts[-1][0]
    assert first.endswith("Answer:") and not last.endswith("Answer:")
    lead = last.rsplit("Answer: ", 1)[1]
    assert "man" in lead and "Northern English accent" in lead and "woman" not in lead
    assert out.live and out.targets[0].response == f"{lead} says that someone checked the bus timetable."
    assert out.provenance.llm_attempt == 2


def test_no_opening_for_an_unknown_speaker_or_a_chat_model():
    import dataclasses as dc

    import numpy as np

    from align_data.stages.targets.prompts import build_request, opening

    unknown = dc.replace(_record(), voice=dc.replace(MALE, gender="unknown"))
    assert opening(unknown, np.random.default_rng(0)) == ""
    assert build_request(unknown, np.random.default_rng(0), lead=True).llm_prompt.endswith("Answer:")
    client = ScriptedClient([WRONG, WRONG, WRONG])
    client.chat = True
    TargetsStage(LLMConfig(), seed=0, client=client,
                 repair=RepairPolicy.from_config(QualityConfig(max_repairs=2)))([_record()])
    assert all(p[0].endswith("Answer:") for p in client.prompts)
