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
    recipe: str = ""  # the row's task (continuation, description, interleaved, mtbi): what task_weights mix
    clip_samples: tuple[int, ...] = ()  # audio samples of each clip, for length bucketing

    def length(self) -> int:
        """A sort key for length bucketing: input and target tokens plus one per 2560 audio samples (the conv
        adapter's output rate at 16 kHz)."""
        tokens = sum(len(p.ids) if isinstance(p, TextPiece) else 0 for p in self.pieces)
        return tokens + len(self.target_ids) + sum(self.clip_samples) // 2560


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
    used = sorted(clip_of, key=clip_of.__getitem__)
    clips = tuple(record.audio[i].flac for i in used)
    merged = _merge_text(pieces)
    return Example(f"{record.id}/{index}", target.task, merged, target_ids, clips, record.task or target.task,
                   tuple(record.audio[i].num_samples for i in used)), cut


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


def usable_targets(record: Record, counts: Counter[str], *, tasks: list[str] | None = None,
                   split: str | None = None) -> list[int]:
    """Indices of the row's targets that make training examples, counting rows and targets skipped by reason."""
    counts["rows"] += 1
    if split is not None and record.split != split:
        counts[f"skipped_split_{record.split}"] += 1
        return []
    if not record.targets:
        counts["skipped_no_targets"] += 1
        return []
    problem = _speech_problem(record)
    if problem:
        counts[f"skipped_{problem}"] += 1
        return []
    usable = []
    for index, target in enumerate(record.targets):
        if tasks is not None and target.task not in tasks:
            counts["skipped_task_filter"] += 1
        elif not target.response.strip():
            counts["skipped_empty_response"] += 1
        else:
            usable.append(index)
    return usable


def record_examples(record: Record, tokenizer: Tokenizer, counts: Counter[str], *, max_target_tokens: int,
                    tasks: list[str] | None = None, split: str | None = None) -> list[Example]:
    """The usable (record, target) examples of one row, counting rows and targets skipped by reason."""
    examples = []
    for index in usable_targets(record, counts, tasks=tasks, split=split):
        example, cut = example_from_record(record, index, record.targets[index], tokenizer, max_target_tokens)
        counts["targets_cut"] += cut
        examples.append(example)
    return examples


def no_examples_error(shards_dir: Path, counts: dict[str, int], seen_tasks: set[str],
                      tasks: list[str] | None) -> AlignDataError:
    """The error for a build that yields nothing to train or evaluate on, naming the tasks it does have."""
    hint = f" (tasks present: {', '.join(sorted(seen_tasks))})" if tasks is not None and seen_tasks else ""
    return AlignDataError(f"{shards_dir} has no usable training examples{hint}; counts: {dict(counts)}; "
                          "check the `tasks` and `split` settings")


def load_examples(shards_dir: Path, tokenizer: Tokenizer, *, max_target_tokens: int, tasks: list[str] | None = None,
                  split: str | None = None) -> tuple[list[Example], dict[str, int]]:
    """Every usable (record, target) pair of a build as a list (evaluation; training streams), and counts of
    rows/targets skipped by reason."""
    counts: Counter[str] = Counter()
    examples: list[Example] = []
    seen_tasks: set[str] = set()
    for record in read_records(shard_files(shards_dir)):
        seen_tasks.update(t.task for t in record.targets)
        examples += record_examples(record, tokenizer, counts, max_target_tokens=max_target_tokens, tasks=tasks,
                                    split=split)
    counts["examples"] = len(examples)
    if not examples:
        raise no_examples_error(shards_dir, counts, seen_tasks, tasks)
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

