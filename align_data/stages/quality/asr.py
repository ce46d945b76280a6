"""Batched Whisper transcription of 16 kHz clips through HF transformers (the only impure part of the stage)."""

from __future__ import annotations

import copy
import fcntl
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from align_data.errors import AlignDataError

SAMPLE_RATE = 16000
TOKENS_PER_SECOND = 8  # generation cap per second of audio: speech runs at ~3-5 tokens/s, a loop gets cut
# The encoder sees at least this much (the clip, then silence) instead of Whisper's full 30 s: a probe on 48
# TTS clips gave the same WER as 30 s at half the cost, while windows cut at the clip's end made the decoder
# stop early or loop. Every clip under MIN_WINDOW_S - TAIL_S gets the same window, so batching changes nothing.
MIN_WINDOW_S = 15.0
TAIL_S = 2.0


def resolve_whisper(value: str) -> Path:
    """The HF folder of the ``quality.model`` setting; 'embedded' prepares the bundled whisper-base once
    (under a file lock, so workers starting together do not convert it twice)."""
    if value == "embedded":
        from align_data.models.cache import cache_dir
        from align_data.models.whisper import is_prepared, prepare_whisper, whisper_dir

        if is_prepared(whisper_dir()):
            return whisper_dir()
        with open(cache_dir() / ".whisper.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return prepare_whisper()
    path = Path(value).expanduser()
    if not (path / "config.json").is_file():
        raise AlignDataError(f"quality.model={value!r} is not an HF Whisper folder (no config.json); give a "
                             "save_pretrained folder or 'embedded'")
    return path


class _DropLengthNotice(logging.Filter):
    """Whisper's generate restores its 448-token max_length, so every call would log that max_new_tokens wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "seem to have been set. `max_new_tokens` will take precedence" not in record.getMessage()


def _quiet_generate_log() -> None:
    log = logging.getLogger("transformers.generation.utils")
    if not any(isinstance(f, _DropLengthNotice) for f in log.filters):
        log.addFilter(_DropLengthNotice())


def pick_device(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise AlignDataError("quality.device=cuda but torch sees no CUDA GPU; use cpu or auto")
    return "cuda" if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()) else "cpu"


class WhisperTranscriber:
    """Loads a Whisper model once; ``transcribe`` turns a batch of clips into texts in one generate call.

    The encoder runs on a window of ``max(longest clip + TAIL_S, MIN_WINDOW_S)`` rather than Whisper's 30 s
    (half the work, same WER on TTS clips; see above), so callers batch clips of similar length. Decoding is
    greedy, in ``language``, capped by the longest clip's duration."""

    def __init__(self, model: str, device: str = "auto", language: str = "en", threads: int | None = None):
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        if threads:
            torch.set_num_threads(threads)
        _quiet_generate_log()
        path = resolve_whisper(model)
        self.name = "whisper-base (embedded)" if model == "embedded" else path.name
        self.device = pick_device(device)
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(path)
            self.model = WhisperForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise AlignDataError(f"quality.model: cannot load a Whisper model from {path}: {exc}") from exc
        self.model = self.model.to(self.device).eval()
        self.language = language
        encoder = self.model.model.encoder
        self.max_samples = encoder.embed_positions.num_embeddings * 2 * self.processor.feature_extractor.hop_length

    def transcribe(self, clips: Sequence[np.ndarray]) -> list[str]:
        """One text per 16 kHz mono float clip (at most ``max_samples`` long), in order."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        from align_data.models.whisper import encode_short

        if not clips:
            return []
        longest = max(len(c) for c in clips)
        if longest > self.max_samples:
            raise ValueError(f"a clip of {longest} samples is longer than Whisper's window ({self.max_samples})")
        extractor = self.processor.feature_extractor
        features: Any = extractor(list(clips), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        window = min(max(longest / SAMPLE_RATE + TAIL_S, MIN_WINDOW_S), self.max_samples / SAMPLE_RATE)
        frames = int(np.ceil(window * SAMPLE_RATE / extractor.hop_length))
        frames += frames % 2  # the encoder's second convolution has stride 2
        generation = copy.deepcopy(self.model.generation_config)
        generation.max_length = None  # the cap below replaces Whisper's 448-token limit
        generation.max_new_tokens = min(int(TOKENS_PER_SECOND * longest / SAMPLE_RATE) + 10, 440)
        generation.do_sample, generation.num_beams = False, 1
        with torch.inference_mode():
            hidden = encode_short(self.model.model.encoder, features[:, :, :frames].to(self.device, self.dtype))
            ids = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden), generation_config=generation,
                attention_mask=torch.ones(hidden.shape[:2], dtype=torch.long, device=self.device),
                language=self.language, task="transcribe")
        return [t.strip() for t in self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]
