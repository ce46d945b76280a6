"""Build shards → tokenized training examples → batches of log-mel features and token ids, in seeded order."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import soxr
import torch

from align_data.errors import AlignDataError
from align_data.schemas import Record, Target, check_schema_version, record_from_row
from align_data.schemas.arrow import META_SCHEMA_VERSION

if TYPE_CHECKING:
    from transformers import WhisperFeatureExtractor

# Mel frames are padded to a multiple of this: Whisper halves them and the adapter divides by 8.
FRAME_MULTIPLE = 16
PROMPT_SEPARATOR = "\n\n"  # after the instruction, and between the input and a prompted response


class Tokenizer(Protocol):
    """The part of a HF tokenizer the data path uses."""

    bos_token_id: int | None
    eos_token_id: int | None

    def __call__(self, text: list[str], add_special_tokens: bool = ...) -> dict[str, list[list[int]]]: ...


@dataclass(frozen=True, slots=True)
class TextPiece:
    """Input tokens that are embedded by the LM's own embedding table."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SpeechPiece:
    """A speech span: clip ``clip`` of the example (of the batch once collated), and its transcript's tokens."""

    clip: int
    text_ids: tuple[int, ...]


Piece = TextPiece | SpeechPiece


@dataclass(frozen=True, slots=True)
class Example:
    """One (record, target) pair, tokenized: input pieces in order, target ids, and the FLAC clips it uses."""

    key: str
    task: str
    pieces: tuple[Piece, ...]
    target_ids: tuple[int, ...]
    clips: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Collated examples; ``SpeechPiece.clip`` indexes ``features`` (one (mels, frames) tensor per clip)."""

    keys: tuple[str, ...]
    pieces: tuple[tuple[Piece, ...], ...]
    features: tuple[torch.Tensor, ...]
    targets: tuple[torch.Tensor, ...]


def shard_files(shards_dir: Path) -> list[Path]:
    """The Parquet shards of a build folder (``DIR/shards/*.parquet``, or ``DIR/*.parquet``), sorted."""
    shards_dir = Path(shards_dir)
    if not shards_dir.is_dir():
        raise AlignDataError(f"{shards_dir} is not a folder; pass the output folder of `align-data build`")
    files = sorted((shards_dir / "shards").glob("*.parquet")) or sorted(shards_dir.glob("*.parquet"))
    if not files:
        raise AlignDataError(f"{shards_dir} has no shards (no shards/*.parquet); pass the output folder of a "
                             "finished `align-data build`")
    return files


def read_records(files: list[Path]) -> Iterator[Record]:
    """Records of each shard in order, after refusing shards of an unknown schema major version."""
    for path in files:
        metadata = pq.read_schema(path).metadata or {}
        check_schema_version(metadata.get(META_SCHEMA_VERSION), str(path))
        for row in pq.read_table(path).to_pylist():
            yield record_from_row(row)


def _ids(tokenizer: Tokenizer, texts: list[str]) -> list[tuple[int, ...]]:
    """Token ids of each text, without special tokens (empty text → no ids)."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [tuple(ids) for ids in encoded]


def example_from_record(record: Record, index: int, target: Target, tokenizer: Tokenizer,
                        max_target_tokens: int) -> tuple[Example, bool]:
    """Template ``<bos> [prompt\\n\\n] segments [\\n\\n] target <eos>``; returns the example and whether it was cut."""
    if tokenizer.eos_token_id is None:
        raise AlignDataError("the LLM's tokenizer has no eos token; use an LLM folder whose tokenizer defines one")
    texts = [target.prompt + PROMPT_SEPARATOR if target.prompt else ""]
    texts += [seg.text if i == 0 else " " + seg.text for i, seg in enumerate(record.segments)]
    texts += [PROMPT_SEPARATOR if target.prompt else "", target.response if target.prompt else " " + target.response]
    ids = _ids(tokenizer, texts)
    head = (tokenizer.bos_token_id,) if tokenizer.bos_token_id is not None else ()
    pieces: list[Piece] = [TextPiece(head + ids[0])]
    clip_of: dict[int, int] = {}
    for seg, seg_ids in zip(record.segments, ids[1:-2], strict=True):
        if seg.modality == "speech":
            clip = clip_of.setdefault(seg.audio_index, len(clip_of))
            pieces.append(SpeechPiece(clip, seg_ids))
        else:
            pieces.append(TextPiece(seg_ids))
    pieces.append(TextPiece(ids[-2]))
    response = ids[-1]
    cut = len(response) >= max_target_tokens
    target_ids = response[:max_target_tokens] if cut else response + (tokenizer.eos_token_id,)
    clips = tuple(record.audio[i].flac for i in sorted(clip_of, key=clip_of.__getitem__))
    merged = _merge_text(pieces)
    return Example(f"{record.id}/{index}", target.task, merged, target_ids, clips), cut


def _merge_text(pieces: list[Piece]) -> tuple[Piece, ...]:
    """Join adjacent text pieces and drop empty ones, so each run of text is embedded in one call."""
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, TextPiece):
            if not piece.ids:
                continue
            if out and isinstance(out[-1], TextPiece):
                out[-1] = TextPiece(out[-1].ids + piece.ids)
                continue
        out.append(piece)
    return tuple(out)


def _speech_problem(record: Record) -> str | None:
    """Why a record cannot give speech input, as a count key; None when it can."""
    speech = [s for s in record.segments if s.modality == "speech"]
    if not speech:
        return "no_speech_segments"
    if any(s.audio_index is None or not 0 <= s.audio_index < len(record.audio) for s in speech):
        return "bad_audio_index"
    return None


def load_examples(shards_dir: Path, tokenizer: Tokenizer, *, max_target_tokens: int, tasks: list[str] | None = None,
                  split: str | None = None) -> tuple[list[Example], dict[str, int]]:
    """Every usable (record, target) pair of a build, and counts of rows/targets skipped by reason."""
    counts: Counter[str] = Counter()
    examples: list[Example] = []
    seen_tasks: set[str] = set()
    for record in read_records(shard_files(shards_dir)):
        counts["rows"] += 1
        if split is not None and record.split != split:
            counts[f"skipped_split_{record.split}"] += 1
            continue
        if not record.targets:
            counts["skipped_no_targets"] += 1
            continue
        problem = _speech_problem(record)
        if problem:
            counts[f"skipped_{problem}"] += 1
            continue
        for index, target in enumerate(record.targets):
            seen_tasks.add(target.task)
            if tasks is not None and target.task not in tasks:
                counts["skipped_task_filter"] += 1
                continue
            if not target.response.strip():
                counts["skipped_empty_response"] += 1
                continue
            example, cut = example_from_record(record, index, target, tokenizer, max_target_tokens)
            counts["targets_cut"] += cut
            examples.append(example)
    counts["examples"] = len(examples)
    if not examples:
        hint = f" (tasks present: {', '.join(sorted(seen_tasks))})" if tasks is not None and seen_tasks else ""
        raise AlignDataError(f"{shards_dir} has no usable training examples{hint}; counts: {dict(counts)}; "
                             "check the `tasks` and `split` settings")
    return examples, dict(counts)


def as_transcript(example: Example) -> Example:
    """The same example with every speech span replaced by its transcript's tokens (the text-input twin)."""
    pieces = [TextPiece(p.text_ids) if isinstance(p, SpeechPiece) else p for p in example.pieces]
    return replace(example, pieces=_merge_text(pieces), clips=())


class Featurizer:
    """FLAC bytes → Whisper log-mel (mels, frames) at the clip's real length, padded to FRAME_MULTIPLE frames."""

    def __init__(self, extractor: WhisperFeatureExtractor, max_audio_s: float) -> None:
        self.extractor = extractor
        self.rate: int = extractor.sampling_rate
        self.multiple = extractor.hop_length * FRAME_MULTIPLE
        self.max_samples = int(max_audio_s * self.rate) // self.multiple * self.multiple or self.multiple

    def audio(self, flac: bytes, key: str) -> np.ndarray:
        """Decoded mono float32 audio at the extractor's rate, cut to max_audio_s and zero-padded."""
        try:
            data, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
        except sf.LibsndfileError as exc:
            raise AlignDataError(f"{key}: its audio is not readable FLAC ({exc}); rebuild the shard") from exc
        mono = data.mean(axis=1)
        if rate != self.rate:
            mono = soxr.resample(mono, rate, self.rate).astype(np.float32)
        mono = mono[: self.max_samples]
        padded = -(-max(len(mono), 1) // self.multiple) * self.multiple
        return np.pad(mono, (0, padded - len(mono)))

    def __call__(self, flac: bytes, key: str) -> torch.Tensor:
        audio = self.audio(flac, key)
        feats = self.extractor(audio, sampling_rate=self.rate, padding="longest",
                               return_tensors="np")["input_features"][0]
        return torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))


def collate(examples: list[Example], featurize: Featurizer) -> Batch:
    """Featurize the clips of ``examples`` and renumber speech pieces to index the batch's clip list."""
    features: list[torch.Tensor] = []
    pieces: list[tuple[Piece, ...]] = []
    for ex in examples:
        offset = len(features)
        features.extend(featurize(flac, ex.key) for flac in ex.clips)
        pieces.append(tuple(replace(p, clip=p.clip + offset) if isinstance(p, SpeechPiece) else p
                            for p in ex.pieces))
    return Batch(keys=tuple(ex.key for ex in examples), pieces=tuple(pieces), features=tuple(features),
                 targets=tuple(torch.tensor(ex.target_ids, dtype=torch.long) for ex in examples))


class ExampleOrder:
    """A reshuffled permutation per epoch from (seed, epoch); step s takes stream items [s*B, (s+1)*B)."""

    def __init__(self, count: int, batch_size: int, seed: int) -> None:
        self.count, self.batch_size, self.seed = count, batch_size, seed
        self._epochs: dict[int, np.ndarray] = {}

    def _epoch(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            self._epochs = {e: p for e, p in self._epochs.items() if e >= epoch - 1}  # a batch spans ≤ 2 epochs
            self._epochs[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.count)
        return self._epochs[epoch]

    def batch(self, step: int) -> list[int]:
        """Example indices of 0-based ``step``; a batch may span the end of one epoch and the next."""
        start = step * self.batch_size
        return [int(self._epoch(i // self.count)[i % self.count]) for i in range(start, start + self.batch_size)]
