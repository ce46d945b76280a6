"""Description faithfulness: statements of an answer that the clip's attributes contradict (pure, no models)."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files

import pytest

from align_data.stages.quality.faithfulness import (
    ATTRIBUTES,
    ClipFacts,
    Contradiction,
    config,
    contradicted_attributes,
    contradictions,
    facts_from_row,
    facts_from_seed,
)

MALE = ClipFacts(gender="male", accent="Northern English", language="en-gb", pitch="normal", speed="normal",
                 volume="normal", duration_s=4.0)
FEMALE = ClipFacts(gender="female", accent="Caribbean", language="en", pitch="low", speed="normal", volume="normal",
                   duration_s=4.0)


def _only(attribute: str, answer: str, facts: ClipFacts, transcript: str = "") -> tuple[str, ...]:
    """The contradicted attributes restricted to ``attribute`` (other attributes of the answer are not tested)."""
    return tuple(a for a in contradicted_attributes(answer, facts, transcript) if a == attribute)


# --- the build's real outputs and the brief's examples ---------------------------------------------------------

def test_real_outputs_are_flagged():
    answer = "A woman says, slowly and quietly, that the bus timetable is checked."
    assert contradicted_attributes(answer, MALE) == ("gender", "speed", "volume")
    answer = "The speaker is a woman with an American accent; she talks quickly and loudly in a low voice."
    assert contradicted_attributes(answer, FEMALE) == ("accent", "speed", "volume")


def test_contradiction_says_what_and_what_is():
    found = contradictions("A woman says, slowly and quietly, that the bus timetable is checked.", MALE)
    assert found == (Contradiction("gender", "woman", "male"), Contradiction("speed", "slowly", "normal speed"),
                     Contradiction("volume", "quietly", "normal volume"))
    found = contradictions("The speaker is a woman with an American accent.", FEMALE)
    assert found == (Contradiction("accent", "American accent", "Caribbean"),)


# --- gender ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "transcript", "gender", "expected"), [
    ("A man says that she closed the door.", "She closed the door.", "male", ()),
    ("A man says his mother is a nurse.", "My mother is a nurse", "male", ()),
    ('A man says "She closed the door and her bag fell."', "She closed the door and her bag fell.", "male", ()),
    ("A man reads: 'Her car is red.'", "Her car is red.", "male", ()),
    ("A man says that she said no to the offer.", "She said no to the offer.", "male", ()),
    ("A woman says that the man said nothing at all.", "The man said nothing at all.", "female", ()),
    ("A woman explains the man says nothing at all.", "The man said nothing at all.", "female", ()),
    ("A man says his brother is a nurse and the boy is ill.", "My brother is a nurse and the boy is ill.", "male", ()),
    ("A woman says, slowly, that the bus is late.", "The bus is late.", "male", ("gender",)),
    ("The speaker is a woman with a British accent.", "The bus is late.", "male", ("gender",)),
    ("She talks quickly about the bus.", "The bus is late.", "male", ("gender",)),
    ("The speaker is a woman who says she closed the door.", "She closed the door.", "male", ("gender",)),
    ("A female voice announces the train.", "The woman announces the train.", "male", ("gender",)),
    ("It is spoken by a man in a calm tone.", "The man is calm.", "female", ("gender",)),
    ("Her voice is clear as she reads the list.", "Take the list.", "male", ("gender",)),
    ("A man's voice reads the list.", "Take the list.", "female", ("gender",)),
    ("A young man quickly says the shop is shut.", "The shop is shut.", "male", ()),
    ("The speaker is male.", "", "female", ("gender",)),
    ("The speaker is male.", "", "male", ()),
    ("A woman says she closed the door.", "She closed the door.", None, ()),
])
def test_gender(answer: str, transcript: str, gender: str | None, expected: tuple[str, ...]):
    assert _only("gender", answer, ClipFacts(gender=gender), transcript) == expected


# --- accent and language ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "accent", "expected"), [
    ("A man with an American accent says hello.", "American", ()),
    ("A man with an American accent says hello.", "New York", ()),
    ("A man with an American accent says hello.", "Northern English", ("accent",)),
    ("He speaks with a Scottish accent.", "Scottish", ()),
    ("He speaks with a Scottish accent.", "British (RP)", ("accent",)),
    ("A British-accented voice reads the note.", "British (RP)", ()),
    ("A British-accented voice reads the note.", "Scottish", ()),
    ("A British-accented voice reads the note.", "Caribbean", ("accent",)),
    ("Her accent is Irish.", "Irish", ()),
    ("Her accent is Irish.", "Scottish", ("accent",)),
    ("She speaks in a Caribbean accent.", "Caribbean", ()),
    ("She speaks with a Jamaican accent.", "Caribbean", ()),
    ("A woman with a British (RP) accent says hi.", "British (RP)", ()),
    ("A man with a Northern English accent says hi.", "Northern English", ()),
    ("A man with a Northern English accent says hi.", "West Midlands", ("accent",)),
    ("A man with a Brummie accent says hi.", "West Midlands", ()),
    ("A man with an Indian accent says hi.", "Indian", ()),
    ("A man with an Indian accent says hi.", "Indian English", ()),
    ("A man with an Australian accent says hi.", "Indian English", ("accent",)),
    ("A man with a British or Australian accent says hi.", "Australian", ()),
    ("She says an American company bought the firm.", "Scottish", ()),
    ("She has an accent that is hard to place.", "Scottish", ()),
    ("A man with an American accent says hi.", None, ()),
])
def test_accent(answer: str, accent: str | None, expected: tuple[str, ...]):
    assert _only("accent", answer, ClipFacts(accent=accent)) == expected


def test_accent_in_transcript_is_content():
    facts = ClipFacts(accent="Scottish", gender="female")
    assert _only("accent", "She says he has an American accent.", facts, "He has an American accent.") == ()


@pytest.mark.parametrize(("answer", "transcript", "language", "expected"), [
    ("A woman is speaking French about the weather.", "It will rain.", "en-us", ("language",)),
    ("The speaker talks in Spanish.", "It will rain.", "en", ("language",)),
    ("A German speaker reads a list.", "Eggs and milk.", "en-gb", ("language",)),
    ("The language is Italian.", "Ciao.", "en", ("language",)),
    ("A woman is speaking English about the weather.", "It will rain.", "en-us", ()),
    ("A woman is speaking French about the weather.", "Il pleut.", "fr", ()),
    ("A man says the book was translated from French.", "The book was translated from French.", "en", ()),
    ("A man says he studies in French.", "I study in French.", "en", ()),
    ("He speaks English with a French accent.", "Hello.", "en", ()),
    ("A woman is speaking French.", "", None, ()),
])
def test_language(answer: str, transcript: str, language: str | None, expected: tuple[str, ...]):
    assert _only("language", answer, ClipFacts(language=language), transcript) == expected


# --- pitch, speed and volume -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("attribute", "answer", "level"), [
    ("pitch", "She speaks in a high-pitched voice.", "high"),
    ("pitch", "She speaks in a high pitched voice.", "high"),
    ("pitch", "Her voice is squeaky and shrill.", "high"),
    ("pitch", "He speaks in a deep voice.", "low"),
    ("pitch", "He speaks in a low voice.", "low"),
    ("pitch", "His voice is very deep.", "low"),
    ("pitch", "He speaks at a medium pitch.", "normal"),
    ("pitch", "He speaks with a mid-range pitch.", "normal"),
    ("pitch", "His pitch is average.", "normal"),
    ("speed", "She talks quickly.", "high"),
    ("speed", "She speaks fast.", "high"),
    ("speed", "She speaks at a rapid pace.", "high"),
    ("speed", "He speaks slowly.", "low"),
    ("speed", "He reads at a slow, deliberate pace.", "low"),
    ("speed", "His delivery is unhurried.", "low"),
    ("speed", "He speaks at a steady pace.", "normal"),
    ("speed", "He speaks at a moderate pace.", "normal"),
    ("speed", "He speaks neither fast nor slow.", "normal"),
    ("speed", "He talks neither too quickly nor too slowly.", "normal"),
    ("volume", "She talks loudly.", "high"),
    ("volume", "She speaks in a loud voice.", "high"),
    ("volume", "She speaks quietly.", "low"),
    ("volume", "She whispers the address.", "low"),
    ("volume", "She speaks in a soft, gentle voice.", "low"),
    ("volume", "She speaks at a normal volume.", "normal"),
    ("volume", "She speaks at a normal pace and volume.", "normal"),
    ("volume", "With normal pitch, speed and volume, she reads.", "normal"),
])
def test_levels(attribute: str, answer: str, level: str):
    for fact in ("low", "normal", "high"):
        expected = () if fact == level else (attribute,)
        assert _only(attribute, answer, ClipFacts(**{attribute: fact})) == expected, (answer, fact)
    assert _only(attribute, answer, ClipFacts()) == ()


@pytest.mark.parametrize(("attribute", "answer", "transcript"), [
    ("speed", "A man says a fast car went by.", "A fast car went by."),
    ("speed", "A man says that the car was fast.", "The car was fast."),
    ("speed", "A man says to come quickly.", "Come quickly!"),
    ("speed", "He says he likes a slow pace of life.", "I like a slow pace of life."),
    ("volume", "He says the music was loud.", "The music was loud."),
    ("volume", "He says the room is quiet.", "The room is quiet."),
    ("pitch", "He says the prices are high.", "Prices are high."),
    ("pitch", "He says high winds are expected.", "Winds are expected."),
    ("pitch", "He says the lake is deep.", "The lake is deep."),
    ("speed", "He speaks, not too fast, about the car.", "The car."),
    ("speed", "He does not speak quickly.", "Hello."),
    ("speed", "He speaks not too quickly and not too slowly.", "Hello."),
    ("volume", "She is not very loud.", "Hello."),
])
def test_level_words_that_are_not_statements(attribute: str, answer: str, transcript: str):
    for fact in ("low", "normal", "high"):
        assert _only(attribute, answer, ClipFacts(**{attribute: fact}), transcript) == (), (answer, fact)


def test_speech_noun_context_counts_even_with_the_word_in_the_transcript():
    facts = ClipFacts(speed="low")
    assert _only("speed", "He speaks at a fast pace about his fast car.", facts, "My fast car.") == ("speed",)
    assert _only("speed", "He says his car is fast.", facts, "My car is fast.") == ()


def test_neither_nor_is_normal():
    assert _only("speed", "She speaks neither fast nor slow.", ClipFacts(speed="high")) == ("speed",)
    assert _only("volume", "Her voice is neither loud nor soft.", ClipFacts(volume="normal")) == ()


# --- noise and reverb ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "snr_db", "expected"), [
    ("There is background noise behind the speaker.", None, ("noise",)),
    ("There is background noise behind the speaker.", 40.0, ("noise",)),
    ("There is background noise behind the speaker.", 8.0, ()),
    ("There is background noise behind the speaker.", 20.0, ()),
    ("The recording is noisy, with static and hiss.", None, ("noise",)),
    ("She speaks in a crowd.", None, ("noise",)),
    ("A clean recording of a man.", None, ()),
    ("A clean recording of a man.", 8.0, ("noise",)),
    ("There is no background noise.", None, ()),
    ("There is barely any background noise.", None, ()),
    ("It is not noisy.", None, ()),
    ("There is no background noise.", 5.0, ("noise",)),
    ("The audio is clear audio with a quiet background.", 10.0, ("noise",)),
    ("The audio is clear audio with a quiet background.", 20.0, ()),
    ("A silent background.", 12.0, ("noise",)),
])
def test_noise(answer: str, snr_db: float | None, expected: tuple[str, ...]):
    assert _only("noise", answer, ClipFacts(snr_db=snr_db)) == expected


def test_noise_in_the_transcript_is_content():
    answer, transcript = "He says the traffic noise kept him awake.", "The traffic noise kept me awake."
    assert _only("noise", answer, ClipFacts(), transcript) == ()


@pytest.mark.parametrize(("answer", "c50_db", "expected"), [
    ("Her voice sounds echoey.", None, ("reverb",)),
    ("There is an echo, as if in a large hall.", 30.0, ("reverb",)),
    ("The reverberation is strong.", None, ("reverb",)),
    ("The reverberant room makes it cavernous.", 5.0, ()),
    ("Her voice sounds echoey.", 15.0, ()),
    ("A dry recording, close-miked.", None, ()),
    ("A dry recording, close-miked.", 5.0, ("reverb",)),
    ("There is no echo.", 4.0, ("reverb",)),
    ("There is no echo.", None, ()),
    ("He echoes the words of his teacher.", None, ()),
    ("A woman echoing the words of her friend.", None, ()),
])
def test_reverb(answer: str, c50_db: float | None, expected: tuple[str, ...]):
    assert _only("reverb", answer, ClipFacts(c50_db=c50_db)) == expected


# --- duration and emotion --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "duration_s", "expected"), [
    ("A 3-second clip of a man.", 3.0, ()),
    ("A 3-second clip of a man.", 4.6, ()),
    ("A 3-second clip of a man.", 10.0, ("duration",)),
    ("The clip lasts about 5 s.", 6.0, ()),
    ("The clip lasts about 5s.", 12.0, ("duration",)),
    ("The clip lasts twenty-five seconds.", 24.0, ()),
    ("The clip lasts twenty-five seconds.", 4.0, ("duration",)),
    ("It lasts half a minute.", 28.0, ()),
    ("It lasts half a minute.", 5.0, ("duration",)),
    ("It lasts a minute.", 4.0, ("duration",)),
    ("It lasts 2 minutes.", 100.0, ()),
    ("It lasts 2 minutes.", 10.0, ("duration",)),
    ("It lasts a few seconds.", 40.0, ()),
    ("It lasts 3 to 4 seconds.", 6.0, ()),
    ("It lasts ten seconds.", None, ()),
])
def test_duration(answer: str, duration_s: float | None, expected: tuple[str, ...]):
    assert _only("duration", answer, ClipFacts(duration_s=duration_s)) == expected


def test_duration_in_the_transcript_is_content():
    facts = ClipFacts(duration_s=3.0)
    assert _only("duration", "A man says the test starts in five minutes.", facts, "It starts in 5 minutes.") == ()
    assert _only("duration", "A man says the test starts in ten minutes.", facts, "It starts in 5 minutes.") == (
        "duration",)


@pytest.mark.parametrize(("answer", "emotion", "expected"), [
    ("She sounds happy.", "happy", ()),
    ("She sounds cheerful and excited.", "happy", ()),
    ("She speaks in a cheerful tone.", "sad", ("emotion",)),
    ("She speaks angrily.", "calm", ("emotion",)),
    ("She speaks calmly.", "neutral", ()),
    ("The speaker sounds nervous.", "fearful", ()),
    ("The speaker sounds surprised.", "happy", ()),
    ("Sounding annoyed, she asks to hurry.", "angry", ()),
    ("Sounding annoyed, she asks to hurry.", "happy", ("emotion",)),
    ("She speaks in a cheerful tone.", None, ()),
    ("She speaks in a cheerful tone.", "unknown", ()),
    ("She speaks in a cheerful tone.", "sarcastic", ()),
    ("She says she is happy with the result.", "sad", ()),
])
def test_emotion(answer: str, emotion: str | None, expected: tuple[str, ...]):
    facts = facts_from_row({"emotion": emotion}, None)
    assert _only("emotion", answer, facts, "I am happy with the result.") == expected


# --- unknown facts, rows, seeds ------------------------------------------------------------------------------

def test_unknown_facts_never_contradict():
    answer = ("A woman with an American accent, speaking French, talks quickly and loudly in a high-pitched voice "
              "over background noise in an echoey hall for about 30 seconds, sounding angry.")
    between = ClipFacts(snr_db=20.0, c50_db=15.0)  # neither clean nor noisy, neither dry nor reverberant
    assert contradictions(answer, between) == ()
    # snr_db / c50_db None are facts: no noise mixed in, no reverberation added
    assert contradicted_attributes(answer, ClipFacts()) == ("noise", "reverb")
    assert contradictions("", MALE) == ()


def test_every_attribute_can_be_contradicted():
    facts = ClipFacts(gender="male", accent="Scottish", language="en", pitch="low", speed="low", volume="low",
                      snr_db=None, c50_db=None, duration_s=4.0, emotion="calm")
    answer = ("The speaker is a woman with an American accent, speaking French; she talks quickly and loudly in a "
              "high-pitched voice over background noise, with an echo, for about 30 seconds, sounding angry.")
    assert contradicted_attributes(answer, facts) == ATTRIBUTES


@pytest.mark.parametrize(("voice", "para", "expected"), [
    (None, None, ClipFacts()),
    ({}, {}, ClipFacts()),
    ({"gender": "unknown", "accent": "unknown", "language": None, "emotion": "unknown"},
     {"pitch_level": None, "speed_level": "unknown", "volume_level": "", "snr_db": None, "c50_db": float("nan")},
     ClipFacts()),
    ({"gender": "Female", "accent": "British (RP)", "language": "en-GB", "emotion": "Happy", "backend": "espeak"},
     {"pitch_level": "high", "speed_level": "normal", "volume_level": "low", "snr_db": 12.5, "c50_db": 8,
      "duration_s": 3.2, "f0_mean_hz": 210.0},
     ClipFacts(gender="female", accent="British (RP)", language="en-gb", pitch="high", speed="normal", volume="low",
               snr_db=12.5, c50_db=8.0, duration_s=3.2, emotion="happy")),
    ({"gender": "male"}, {"speed_level": "fast", "volume_level": "quiet"},
     ClipFacts(gender="male", speed="high", volume="low")),
])
def test_facts_from_row(voice: dict | None, para: dict | None, expected: ClipFacts):
    assert facts_from_row(voice, para) == expected


def test_facts_from_seed():
    seed = ('[00:00:00 - 00:00:03]: "Please bring your own water bottle." (Gender: Female, Accent: British (RP), '
            "Emotion: happy, Pitch: high, Speed: fast, Volume: loud, Duration: 3s, SNR: 12dB, C50: 8dB)")
    facts, transcript = facts_from_seed(seed)
    assert transcript == "Please bring your own water bottle."
    assert facts == ClipFacts(gender="female", accent="British (RP)", pitch="high", speed="high", volume="high",
                              snr_db=12.0, c50_db=8.0, duration_s=3.0, emotion="happy")
    facts, _ = facts_from_seed('[00:00:00 - 00:00:02]: "Hi." (Gender: Male, Accent: Scottish, Pitch: low, '
                               "Speed: slow, Volume: quiet, Duration: 2s)")
    assert (facts.speed, facts.volume, facts.snr_db, facts.c50_db) == ("low", "low", None, None)


def _shots() -> list[dict]:
    text = files("align_data.stages.targets").joinpath("prompts.toml").read_text(encoding="utf-8")
    return tomllib.loads(text).get("description", {}).get("shots", [])


def _seed_facts(seed: str) -> tuple[ClipFacts, str]:
    """The test's own reading of a seed (independent of facts_from_seed): regexes for each attribute."""
    levels = {"low": "low", "normal": "normal", "high": "high", "slow": "low", "fast": "high", "quiet": "low",
              "loud": "high"}

    def field(name: str) -> str | None:
        m = re.search(rf"\b{name}:\s*([^,()]+(?:\([^)]*\))?)", seed)
        return m.group(1).strip() if m else None

    def number(name: str) -> float | None:
        m = re.search(rf"\b{name}:\s*(-?\d+(?:\.\d+)?)", seed)
        return float(m.group(1)) if m else None

    def level(name: str) -> str | None:
        return levels.get((field(name) or "").lower())

    gender, emotion = field("Gender"), field("Emotion")
    facts = ClipFacts(gender=gender.lower() if gender else None, accent=field("Accent"), pitch=level("Pitch"),
                      speed=level("Speed"), volume=level("Volume"), duration_s=number("Duration"),
                      snr_db=number("SNR"), c50_db=number("C50"), emotion=emotion.lower() if emotion else None)
    return facts, re.search(r'"(.*)"', seed).group(1)


@pytest.mark.parametrize("shot", _shots(), ids=lambda s: s["answer"][:40])
def test_prompt_shots_are_faithful_to_their_seeds(shot: dict):
    facts, transcript = _seed_facts(shot["seed"])
    assert facts_from_seed(shot["seed"]) == (facts, transcript)
    assert contradicted_attributes(shot["answer"], facts, transcript) == ()


def test_config_has_every_section():
    assert {"gender", "accent", "language", "pitch", "speed", "volume", "noise", "reverb", "duration",
            "emotion"} <= set(config())
