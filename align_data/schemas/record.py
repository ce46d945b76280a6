"""The one record type that flows through every stage; stages return changed copies."""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = "1.4"  # 1.2: the optional ``quality`` column (Whisper round-trip ASR); 1.3: ``provenance``;
# 1.4: ``voice.mix`` (the voices a blended kokoro voice is made of)

TASKS = ("continuation", "description", "interleaved", "mtbi")


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a segment came from: dataset name, document id and segment index in the document."""

    dataset: str
    doc_id: str
    segment_index: int


@dataclass(frozen=True, slots=True)
class Segment:
    """A span of the record's text, kept as text or spoken; speech spans point into ``audio``."""

    modality: str  # "text" | "speech"
    text: str
    char_start: int
    char_end: int
    audio_index: int | None = None


@dataclass(frozen=True, slots=True)
class AudioClip:
    """One synthesized clip: FLAC bytes, 16 kHz mono."""

    flac: bytes
    sample_rate: int
    num_samples: int

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass(frozen=True, slots=True)
class Voice:
    """The voice that spoke a record and the prosody settings used; only what is actually known."""

    backend: str
    voice_id: str
    gender: str
    accent: str
    language: str
    rate: float | None = None
    pitch: float | None = None
    volume: float | None = None
    emotion: str = "unknown"
    mix: tuple[tuple[str, float], ...] = ()  # a blended voice: (voice, weight) pairs, weights summing to 1


@dataclass(frozen=True, slots=True)
class Paralinguistics:
    """Measured acoustic attributes of the record's speech (all clips together)."""

    duration_s: float
    speech_rate_wps: float
    f0_mean_hz: float | None
    f0_std_hz: float | None
    pitch_level: str
    rms_dbfs: float
    volume_level: str
    speed_level: str
    snr_db: float | None = None
    c50_db: float | None = None


@dataclass(frozen=True, slots=True)
class Acoustics:
    """What was done to the clean TTS audio, with measured results (SNR from the mixed components)."""

    gain_db: float
    trimmed_start_s: float
    trimmed_end_s: float
    peak: float
    noise_type: str | None = None
    target_snr_db: float | None = None
    snr_db: float | None = None
    rt60_s: float | None = None
    c50_db: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One training target: the prompt asked and the response that answers it."""

    task: str
    prompt_id: str
    prompt: str
    response: str
    model: str
    backend: str
    finish_reason: str


@dataclass(frozen=True, slots=True)
class ClipQuality:
    """Whisper round-trip of one speech clip: the transcript and its word errors against the span text."""

    audio_index: int
    asr_text: str
    wer: float
    errors: int  # word substitutions + deletions + insertions after normalization
    ref_words: int  # words of the normalized span text


@dataclass(frozen=True, slots=True)
class Quality:
    """The quality stage's measures of a record: ASR model, per-clip results, WER over all its clips."""

    asr_model: str
    wer: float | None  # sum of errors / sum of reference words over the clips; None without speech
    clips: tuple[ClipQuality, ...] = ()


@dataclass(frozen=True, slots=True)
class Provenance:
    """How a row was made, beyond its voice and targets columns: the source's licence, the TTS engine and its
    version, the synthesis seed, the LLM's seed and sampling, and which repair attempt of each was kept."""

    license: str | None = None  # SourceConfig.license
    tts_engine: str | None = None  # the TTS backend's package and version, e.g. "espeak-ng 1.51"
    tts_seed: int | None = None
    tts_attempt: int = 0  # 0 = the first voice; k = the k-th re-voicing after a high WER
    llm_seed: int | None = None
    llm_attempt: int = 0  # 0 = the first answer; k = the k-th repair after a failed target check
    llm_temperature: float | None = None
    llm_top_p: float | None = None
    llm_max_new_tokens: int | None = None
    shots: str | None = None  # ids of the few-shot examples the LLM was shown, comma-separated
    repaired: tuple[str, ...] = ()  # the check that failed before each repair, in order ("high_wer" for TTS)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a record failed: the stage, a short machine-readable kind, a human message."""

    stage: str
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Record:
    """One training example as it moves through the stages."""

    id: str
    shard_id: int
    source: SourceRef
    text: str
    next_text: str | None = None
    task: str | None = None
    segments: tuple[Segment, ...] = ()
    audio: tuple[AudioClip, ...] = ()
    voice: Voice | None = None
    acoustics: Acoustics | None = None
    paralinguistics: Paralinguistics | None = None
    description: str | None = None
    targets: tuple[Target, ...] = ()
    split: str = "train"
    quality: Quality | None = None
    provenance: Provenance = field(default_factory=Provenance)
    error: ErrorInfo | None = field(default=None)
    filtered: str | None = None
    filter_note: str | None = None  # why, in words, for filtered/ (e.g. the attributes a description contradicts)

    @property
    def live(self) -> bool:
        """True while no stage has failed or filtered this record."""
        return self.error is None and self.filtered is None
