"""Quality stages: the Whisper round-trip ASR gate (before the LLM) and the target checks (after it)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from align_data.config import QualityConfig
from align_data.errors import AlignDataError, ServiceUnavailable
from align_data.schemas import ClipQuality, Quality, Record
from align_data.stages.base import RecordError, Stage, fail
from align_data.stages.quality.checks import check_record, record_facts, shown_texts, unfaithful
from align_data.stages.quality.normalize import wer
from align_data.stages.tts.audio import decode_audio

HIGH_WER = "high_wer"
TOO_LONG = "clip_too_long_for_asr"

Transcribe = Callable[[Sequence[np.ndarray]], list[str]]
# (record as it reached the gate, attempt, voices tried as (backend, id)) -> the record spoken by another voice
Revoice = Callable[[Record, int, frozenset[tuple[str, str]]], Record]


@dataclasses.dataclass(slots=True)
class _Clip:
    """One speech span waiting for its transcript."""

    slot: int  # index of the record in the batch
    audio_index: int
    reference: str
    samples: np.ndarray
    transcript: str | None = None


def speech_clips(record: Record) -> list[tuple[int, str, np.ndarray]]:
    """(audio index, span text, 16 kHz samples) of each speech segment of a record."""
    clips = []
    for segment in record.segments:
        if segment.modality != "speech":
            continue
        if segment.audio_index is None or not 0 <= segment.audio_index < len(record.audio):
            raise RecordError("bad_segment", f"speech segment {segment.char_start}-{segment.char_end} has no clip")
        clip = record.audio[segment.audio_index]
        samples, rate = decode_audio(clip.flac)
        if rate != 16000 or samples.ndim != 1:
            raise RecordError("bad_audio", f"clip {segment.audio_index} is {rate} Hz with shape {samples.shape}, "
                                           "not 16 kHz mono")
        clips.append((segment.audio_index, segment.text, samples))
    return clips


def score(asr_model: str, results: list[tuple[int, str, str]]) -> Quality:
    """Per-clip and record WER from (audio index, reference, transcript) triples."""
    clips = []
    for audio_index, reference, transcript in results:
        clip_wer, errors, ref_words = wer(reference, transcript)
        clips.append(ClipQuality(audio_index=audio_index, asr_text=transcript, wer=round(clip_wer, 4),
                                 errors=errors, ref_words=ref_words))
    total_ref = sum(c.ref_words for c in clips)
    record_wer = None if not clips else round(sum(c.errors for c in clips) / max(total_ref, 1), 4)
    return Quality(asr_model=asr_model, wer=record_wer, clips=tuple(clips))


class QualityStage(Stage):
    """Transcribe every speech clip with Whisper in batches of similar length, score WER against the span
    text, record it in ``quality``, and filter records above ``wer_threshold`` (reason ``high_wer``).

    With ``revoice`` (the TTS, acoustics and paralinguistics stages again) a record over the threshold is spoken
    by another voice of the pool, up to ``quality.max_repairs`` times, before it is filtered; the first voice
    that passes is kept (its voice columns, measures and seed transcript with it).

    ``transcribe=`` injects a transcriber (tests of the batching and filtering without a model)."""

    name: ClassVar[str] = "quality"
    reads: ClassVar[tuple[str, ...]] = ("segments", "audio")
    writes: ClassVar[tuple[str, ...]] = ("quality",)
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    lazy_setup: ClassVar[bool] = True

    def __init__(self, config: QualityConfig, transcribe: Transcribe | None = None, asr_model: str | None = None,
                 max_samples: int = 30 * 16000, revoice: Revoice | None = None):
        self.config = config
        self.revoice = revoice
        self.transcribe = transcribe
        self.asr_model = asr_model or config.model
        self.max_samples = max_samples
        self._usage: dict[str, int] = {}

    def setup(self) -> None:
        """Load Whisper once per worker, on the first batch that has speech."""
        if self.transcribe is None:
            from align_data.stages.quality.asr import WhisperTranscriber

            model = WhisperTranscriber(self.config.model, self.config.device, self.config.language,
                                       self.config.threads)
            self.transcribe, self.asr_model, self.max_samples = model.transcribe, model.name, model.max_samples

    def take_usage(self) -> dict[str, int]:
        return dict(self._usage)

    def __call__(self, batch: Sequence[Record]) -> list[Record]:
        out = list(batch)
        self._usage = {"asr_clips": 0, "asr_batches": 0, "asr_audio_ms": 0}
        self._gate(out, range(len(out)))
        if self.revoice is not None and self.config.max_repairs:
            self._repair(list(batch), out)
        return out

    def _repair(self, before: list[Record], out: list[Record]) -> None:
        """Speak each record over the threshold again with a voice not tried yet, until one passes or
        ``max_repairs`` attempts are spent; a record whose re-voicing fails keeps its first voice (filtered)."""
        tried = {slot: {(r.voice.backend, r.voice.voice_id)} for slot, r in enumerate(out) if r.voice is not None}
        first = {slot: out[slot] for slot, r in enumerate(out) if r.filtered == HIGH_WER}
        usage: Counter[str] = Counter()
        for attempt in range(1, self.config.max_repairs + 1):
            slots = [slot for slot, r in enumerate(out) if r.filtered == HIGH_WER and slot in tried]
            if not slots:
                break
            for slot in slots:
                usage["repairs:high_wer"] += 1
                try:
                    record = self.revoice(before[slot], attempt, frozenset(tried[slot]))
                except ServiceUnavailable:
                    raise
                except Exception:  # noqa: BLE001 -- a voice that fails here leaves the record as the gate found it
                    tried.pop(slot)
                    continue
                tried[slot].add((record.voice.backend, record.voice.voice_id))
                repaired = (*before[slot].provenance.repaired, *("high_wer",) * attempt)
                out[slot] = dataclasses.replace(record, provenance=dataclasses.replace(record.provenance,
                                                                                       repaired=repaired))
            self._gate(out, [s for s in slots if s in tried])
        for slot, record in first.items():
            if out[slot].live:
                usage["repaired"] += 1
            else:
                usage["repairs_exhausted"] += 1
                if out[slot].error is not None:  # a re-voiced clip the ASR failed on: the gate's first verdict stands
                    out[slot] = record
        self._usage.update(sorted(usage.items()))

    def _gate(self, out: list[Record], slots: Sequence[int]) -> None:
        """Transcribe and score the live records at ``slots`` (in place), filtering those over the threshold."""
        pending: list[_Clip] = []
        for slot in slots:
            record = out[slot]
            if not record.live:
                continue
            try:
                clips = speech_clips(record)
            except RecordError as exc:
                out[slot] = fail(record, self.name, exc.kind, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 -- an undecodable clip fails its record, not the shard
                out[slot] = fail(record, self.name, "bad_audio", f"{type(exc).__name__}: {exc}")
                continue
            pending.extend(_Clip(slot, i, text, samples) for i, text, samples in clips)
        if pending and self.transcribe is None:
            self.setup()
        too_long = {c.slot for c in pending if len(c.samples) > self.max_samples}
        for slot in too_long:
            out[slot] = dataclasses.replace(out[slot], filtered=TOO_LONG)
        pending = [c for c in pending if c.slot not in too_long]
        self._transcribe_all(pending, out)
        by_slot: dict[int, list[tuple[int, str, str]]] = {}
        for clip in pending:
            if clip.transcript is not None:
                by_slot.setdefault(clip.slot, []).append((clip.audio_index, clip.reference, clip.transcript))
        for slot in slots:
            record = out[slot]
            if not record.live:
                continue
            quality = score(self.asr_model, sorted(by_slot.get(slot, [])))
            filtered = HIGH_WER if quality.wer is not None and quality.wer > self.config.wer_threshold else None
            out[slot] = dataclasses.replace(record, quality=quality, filtered=filtered)

    def _transcribe_all(self, pending: list[_Clip], out: list[Record]) -> None:
        """Fill in each clip's transcript, batching clips of similar length; a batch that fails fails its
        records (and their clips in later batches are skipped)."""
        order = sorted(pending, key=lambda c: len(c.samples))  # stable: ties keep record order
        size = self.config.batch_size
        for start in range(0, len(order), size):
            chunk = [c for c in order[start:start + size] if out[c.slot].live]
            if not chunk:
                continue
            try:
                answers = self.transcribe([c.samples for c in chunk])
            except AlignDataError:
                raise  # the model cannot be used at all: stop the build with its message
            except Exception as exc:  # noqa: BLE001 -- a failed forward pass fails the records it held, not the shard
                for c in chunk:
                    out[c.slot] = fail(out[c.slot], self.name, "asr_failed", f"{type(exc).__name__}: {exc}")
                continue
            if len(answers) != len(chunk):
                raise RuntimeError(f"the transcriber returned {len(answers)} texts for {len(chunk)} clips")
            for clip, text in zip(chunk, answers, strict=True):
                clip.transcript = text
            self._usage["asr_batches"] += 1
            self._usage["asr_clips"] += len(chunk)
            self._usage["asr_audio_ms"] += sum(len(c.samples) for c in chunk) // 16


class TargetChecksStage(Stage):
    """Filter records whose targets fail one of ``quality.target_filters`` (reason ``target_<check>``; for
    ``unfaithful`` the contradicted attributes go in the filtered/ line and count per attribute in the sidecar)."""

    name: ClassVar[str] = "target_checks"
    reads: ClassVar[tuple[str, ...]] = ("targets",)
    writes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: QualityConfig):
        self.filters = tuple(config.target_filters)
        self._usage: Counter[str] = Counter()

    def __call__(self, batch: Sequence[Record]) -> list[Record]:
        self._usage = Counter()
        return super().__call__(batch)

    def take_usage(self) -> dict[str, int]:
        return dict(sorted(self._usage.items()))

    def process(self, record: Record) -> Record:
        failed = [check for check in check_record(record) if check in self.filters]
        if not failed:
            return record
        note = None
        if failed[0] == "unfaithful":
            facts, shown = record_facts(record), shown_texts(record.provenance.shots)
            found = [c for t in record.targets for c in unfaithful(t, record.text, facts, shown)]
            self._usage.update(f"unfaithful:{a}" for a in dict.fromkeys(c.attribute for c in found))
            note = "; ".join(f"{c.attribute}: said {c.said!r}, the clip is {c.fact}" for c in found)
        return dataclasses.replace(record, filtered=f"target_{failed[0]}", filter_note=note)
