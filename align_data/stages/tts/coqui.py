"""coqui-tts engine (optional ``coqui`` extra): a model from checkpoint + config files, never a hub download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from align_data.errors import AlignDataError
from align_data.stages.base import RecordError
from align_data.stages.tts.audio import checked_engine_audio

INSTALL_HINT = 'install the optional coqui extra: pip install "align-data[coqui]"'
BUILD_HINT = ("a torchaudio built for your torch (CPU torch: https://download.pytorch.org/whl/cpu), or run "
              "`make .venv/.installed-tts`, which installs torchaudio without its native libraries")
UNKNOWN = "unknown"  # coqui configs carry no gender or accent for their speakers
TINY_SAMPLE_RATE = 22050  # the rate of coqui's released VITS models


class CoquiEngine:
    """Synthesizes with a coqui-tts model loaded by path, as ``TTS(model_path=..., config_path=...)`` does."""

    def __init__(self, model_path: str, config_path: str, device: str = "auto", language: str | None = None):
        self.model_path = Path(model_path)
        self.config_path = Path(config_path)
        self.device = device
        self.language = language  # required by multilingual models, ignored by the others
        self._tts = None

    def check(self) -> None:
        """Fail early with an install hint if coqui-tts cannot be imported or the model files are missing."""
        try:
            import TTS.api  # noqa: F401
        except OSError as exc:  # PyPI's torchaudio is a CUDA build: its libraries do not load beside CPU torch
            raise AlignDataError(f"coqui-tts is installed but a native library of its dependencies does not load "
                                 f"({exc}); install {BUILD_HINT}") from exc
        except ImportError as exc:
            reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise AlignDataError(f"coqui-tts cannot be imported ({reason}): {INSTALL_HINT}") from exc
        for path in (self.model_path, self.config_path):
            if not path.exists():
                raise AlignDataError(f"coqui model file not found: {path}; set model_path to the checkpoint "
                                     "(.pth) and config_path to its config.json")

    def load(self) -> None:
        """Load the model once; later calls do nothing."""
        if self._tts is not None:
            return
        self.check()
        import torch
        from TTS.api import TTS

        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            tts = TTS(model_path=str(self.model_path), config_path=str(self.config_path), progress_bar=False)
        except (ValueError, KeyError, RuntimeError, OSError, json.JSONDecodeError) as exc:
            raise AlignDataError(f"could not load coqui model {self.model_path}: {exc}") from exc
        if tts.is_multi_lingual and self.language not in (tts.languages or []):
            raise AlignDataError(f"coqui model {self.model_path} is multilingual: set language to one of "
                                 f"{', '.join(tts.languages or [])}")
        self._tts = tts.to(self.device)

    @property
    def sample_rate(self) -> int:
        self.load()
        return int(self._tts.synthesizer.output_sample_rate)

    @property
    def _single_id(self) -> str:
        """Voice id of a single-speaker model: its folder's name, as coqui names downloaded models."""
        return self.model_path.name if self.model_path.is_dir() else self.model_path.parent.name

    def _voice_language(self) -> str:
        config = self._tts.synthesizer.tts_config
        datasets = config.get("datasets") or []
        language = (self.language or config.get("phoneme_language")
                    or next((d.get("language") for d in datasets if d.get("language")), None))
        return language.replace("_", "-").lower() if language else UNKNOWN

    def voices(self) -> list[dict]:
        """One entry per speaker of a multi-speaker model, else one for the model itself."""
        self.load()
        language = self._voice_language()
        return [{"id": name, "gender": UNKNOWN, "accent": UNKNOWN, "language": language}
                for name in (self._tts.speakers or [self._single_id])]

    def _speaker_arg(self, speaker: str | None) -> str | None:
        speakers = self._tts.speakers
        if not speakers:
            if speaker not in (None, self._single_id):
                raise RecordError("tts_bad_params", f"coqui model {self._single_id!r} has one voice; "
                                                    f"got speaker {speaker!r}")
            return None
        if speaker not in speakers:
            raise RecordError("tts_bad_params", f"coqui speaker {speaker!r} is not in the model "
                                                f"(first speakers: {', '.join(speakers[:5])})")
        return speaker

    def _speakable(self, text: str) -> bool:
        """Whether ``text`` keeps a letter or digit after the model's cleaner drops what it cannot say."""
        tokenizer = getattr(self._tts.synthesizer.tts_model, "tokenizer", None)
        if tokenizer is None:  # models with their own text front end (XTTS, Bark): let them judge
            return bool(text.strip())
        chars = (tokenizer.characters.id_to_char(i) for i in tokenizer.text_to_ids(text, language=self.language))
        return any(len(c) == 1 and c.isalnum() for c in chars)

    def synthesize(self, text: str, speaker: str | None = None, speed: float | None = None,
                   seed: int | None = None) -> tuple[np.ndarray, int]:
        """Float32 samples and output sample rate for ``text``; the same seed gives identical samples.

        ``speed`` (``None`` = the model's own) divides VITS's ``length_scale``. Without a ``seed`` the model
        draws its noise from torch's global generator; with one, that generator is left as it was.
        """
        self.load()
        import torch
        from TTS.utils.synthesizer import PAD_SILENCE_SAMPLES

        if speed is not None and not speed > 0:
            raise RecordError("tts_bad_params", f"coqui speed must be > 0, got {speed}")
        speaker = self._speaker_arg(speaker)
        if not self._speakable(text):
            raise RecordError("tts_silent", f"nothing in {text[:80]!r} is in the coqui model's vocabulary")
        model = self._tts.synthesizer.tts_model
        length_scale = getattr(model, "length_scale", None)
        if speed not in (None, 1.0) and length_scale is None:
            raise RecordError("tts_bad_params", f"coqui {type(model).__name__} has no speed control")
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [],
                                   enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            if speed is not None and length_scale is not None:
                model.length_scale = length_scale / speed
            try:
                language = self.language if self._tts.is_multi_lingual else None
                wav = self._tts.tts(text, speaker=speaker, language=language)
            finally:
                if length_scale is not None:
                    model.length_scale = length_scale
        audio = np.asarray(wav, dtype=np.float32)
        if audio.size > PAD_SILENCE_SAMPLES and not audio[-PAD_SILENCE_SAMPLES:].any():
            audio = audio[:-PAD_SILENCE_SAMPLES]  # coqui pads every sentence, the last one too
        return checked_engine_audio(audio, "coqui", text), self.sample_rate


def build_tiny_vits(out_dir: Path, speakers: list[str] | None = None, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random-init character VITS (no phonemizer) laid out like a downloaded coqui model.

    Returns ``(model_path, config_path)``; with ``speakers`` it is multi-speaker with ``speaker_ids.json``.
    The same seed writes the same weights. It speaks noise, not words: for tests and benchmarks only.
    """
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    speakers_file = None
    if speakers:
        speakers_file = str((out_dir / "speaker_ids.json").resolve())  # coqui's downloader writes absolute paths
        Path(speakers_file).write_text(json.dumps({name: i for i, name in enumerate(speakers)}), encoding="utf-8")
    args = VitsArgs(
        hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2, num_layers_text_encoder=1,
        num_layers_posterior_encoder=1, num_layers_flow=1, upsample_initial_channel_decoder=32,
        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]], init_discriminator=False,
        speaker_embedding_channels=8, use_speaker_embedding=bool(speakers), speakers_file=speakers_file)
    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="<PAD>", eos="<EOS>", bos="<BOS>", blank="<BLNK>",
        characters="abcdefghijklmnopqrstuvwxyz", punctuations="!'(),-.:;? ", phonemes=None, is_unique=True,
        is_sorted=True)
    audio = BaseAudioConfig(sample_rate=TINY_SAMPLE_RATE, fft_size=1024, win_length=1024, hop_length=256,
                            num_mels=80, mel_fmin=0, mel_fmax=None, do_trim_silence=False)
    config = VitsConfig(model_args=args, audio=audio, use_phonemes=False, phoneme_language="en",
                        text_cleaner="basic_cleaners", characters=characters, use_speaker_embedding=bool(speakers),
                        speakers_file=speakers_file)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Vits(config)
    model_path, config_path = out_dir / "model.pth", out_dir / "config.json"
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, model_path)
    config.save_json(str(config_path))
    return model_path, config_path
