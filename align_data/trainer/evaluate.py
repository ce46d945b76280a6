"""Held-out evaluation of an adapter checkpoint, per split and task.

Target loss from speech vs from the transcript as text (the gap BLSP closes), the same speech loss under
untrained adapters of the run's seed and the next ones (what training bought), and behaviour alignment: greedy
responses to the speech and to the transcript, compared by BLEU, chrF and MiniLM cosine.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from align_data.errors import AlignDataError
from align_data.trainer.checkpoint import STATE_FILE, load_adapter
from align_data.trainer.config import TrainConfig
from align_data.trainer.data import Example, Featurizer, as_transcript, collate, load_examples, shard_files
from align_data.trainer.generate import respond_batch
from align_data.trainer.loop import torch_threads
from align_data.trainer.similarity import SentenceEmbedder, similarity
from align_data.trainer.model import (
    EncoderCache,
    FrozenModels,
    SpeechLM,
    build_adapter,
    load_frozen_models,
    resolve_device,
)

# Splits a build writes for rows no training run should see: held-out documents, MTBI phrasings and MTBI tasks.
HELDOUT_SPLITS = ("heldout", "heldout_prompt", "heldout_task")
BASELINE = "baseline_speech_"  # + k: summed NLL under the k-th untrained adapter


def split_counts(shards_dir: Path) -> dict[str, int]:
    """Rows per ``split`` tag of a build (reads only that column)."""
    counts: Counter[str] = Counter()
    for path in shard_files(shards_dir):
        counts.update(pq.read_table(path, columns=["split"]).column("split").to_pylist())
    return dict(sorted(counts.items()))


def evaluate(shards_dir: Path, ckpt_dir: Path, *, splits: Iterable[str] | None = None, tasks: list[str] | None = None,
             max_examples: int | None = None, batch_size: int = 4, generate: int | None = 8,
             max_new_tokens: int = 32, baseline: bool = True, baseline_inits: int = 3,
             embedder: SentenceEmbedder | None = None, embed: bool = True, device: str = "auto",
             threads: int | None = None, progress: bool = True, models: FrozenModels | None = None,
             generate_batch: int = 16) -> dict[str, Any]:
    """Evaluate the checkpoint in ``ckpt_dir`` on the rows of ``splits`` (None: every row) of ``shards_dir``.

    ``max_examples`` and ``generate`` count per split (``generate`` 0 turns generation off, None generates for
    every example); generated examples alternate between tasks. ``baseline`` scores ``baseline_inits`` untrained
    adapters (seeds seed, seed+1, ...) and compares with their mean loss. ``embed`` loads MiniLM for the cosine
    unless an ``embedder`` is given. ``threads`` None keeps the checkpoint's. ``generate_batch`` responses are
    decoded together (one left-padded batch; a decode step costs about as much for 16 rows as for one on CPU).
    Returns totals over the evaluated rows, a ``per_task`` breakdown, one section per split under ``splits``, and
    the generated responses.
    """
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / STATE_FILE).is_file():
        raise AlignDataError(f"{ckpt_dir} has no {STATE_FILE}; pass the --out folder of a finished `train`")
    saved = json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8"))
    config = TrainConfig.model_validate({**saved["config"], "device": device,
                                         "threads": threads or saved["config"].get("threads")})
    present = split_counts(shards_dir)
    wanted = [s for s in (splits if splits is not None else present) if s in present]
    if not wanted:
        raise AlignDataError(f"{shards_dir} has no rows of split {', '.join(splits or [])} (rows per split: "
                             f"{present}); build with splits.heldout_fraction > 0 or MTBI held-out ids, or pass "
                             "--split train")
    with torch_threads(config.threads):
        torch_device, dtype = resolve_device(config)
        models = models or load_frozen_models(config, torch_device, dtype)
        if generate != 0 and embed and embedder is None:
            embedder = SentenceEmbedder(device=torch_device)
        run = _Run(config, models, ckpt_dir, torch_device, baseline_inits if baseline else 0, embedder, batch_size,
                   max_new_tokens, progress, generate_batch)
        sections: dict[str, dict[str, Any]] = {}
        for split in wanted:
            examples, counts = load_examples(shards_dir, models.tokenizer, max_target_tokens=config.max_target_tokens,
                                             tasks=tasks, split=split)
            examples = examples[:max_examples] if max_examples else examples
            sections[split] = {**run.split_section(split, examples, generate), "rows": present[split],
                               "counts": {k: v for k, v in counts.items() if not k.startswith("skipped_split_")}}
    totals = _loss_summary([s["_sums"] for s in sections.values()])
    generations = [g for s in sections.values() for g in s.pop("_generations")]
    for section in sections.values():
        section.pop("_sums")
    return {**totals, "step": saved["step"], "checkpoint": str(ckpt_dir), "shards_dir": str(shards_dir),
            "split_rows": present, "splits": sections,
            "alignment": _alignment(generations, embedder), "generations": generations,
            "settings": {"max_examples": max_examples, "generate": generate, "max_new_tokens": max_new_tokens,
                         "batch_size": batch_size, "generate_batch": generate_batch, "baseline": baseline,
                         "baseline_seeds": run.baseline_seeds,
                         "embedding_model": "all-MiniLM-L6-v2" if embedder is not None else None}}


class _Run:
    """The loaded models of one evaluation, applied split by split."""

    def __init__(self, config: TrainConfig, models: FrozenModels, ckpt_dir: Path, device: torch.device,
                 baseline_inits: int, embedder: SentenceEmbedder | None, batch_size: int, max_new_tokens: int,
                 progress: bool, generate_batch: int) -> None:
        self.models, self.embedder = models, embedder
        self.batch_size, self.max_new_tokens, self.progress = batch_size, max_new_tokens, progress
        self.generate_batch = max(1, generate_batch)
        # the trained and the untrained adapters read one clip's encoder states from one cache
        cache = EncoderCache.for_config(config)
        self.model = SpeechLM(models.encoder, load_adapter(ckpt_dir, device), models.lm, cache).eval()
        # The untrained adapters of the run's seed and the next ones: one init is a noisy yardstick (seeds 0-2 of
        # the demo's adapter scored 3.58-3.83 on its held-out rows), their mean is the loss to beat.
        self.baseline_seeds = [config.seed + k for k in range(baseline_inits)]
        self.untrained = []
        for seed in self.baseline_seeds:
            adapter = build_adapter(models.encoder, models.lm, seed, config).to(device=device, dtype=torch.float32)
            self.untrained.append(SpeechLM(models.encoder, adapter, models.lm, cache).eval())
        self.featurize = Featurizer(models.extractor, config.max_audio_s)

    def split_section(self, split: str, examples: list[Example], generate: int | None) -> dict[str, Any]:
        """Losses and alignment of one split; ``_sums`` and ``_generations`` are taken out by the caller."""
        sums = self.losses(split, examples)
        chosen = _alternate_tasks(examples, generate)
        generations: list[dict[str, Any]] = []
        with tqdm(total=len(chosen), desc=f"generate {split}", unit="example", file=sys.stderr,
                  disable=not self.progress) as bar:
            for start in range(0, len(chosen), self.generate_batch):
                batch = chosen[start: start + self.generate_batch]
                generations += self.generations(split, batch)
                bar.update(len(batch))
        section = {**_loss_summary([sums]), "alignment": _alignment(generations, self.embedder)}
        return {**section, "_sums": sums, "_generations": generations}

    def losses(self, split: str, examples: list[Example]) -> dict[str, dict[str, float]]:
        """Summed target NLL per task: speech input, transcript input, speech under the untrained adapter."""
        sums: dict[str, dict[str, float]] = defaultdict(Counter)
        starts = range(0, len(examples), self.batch_size)
        for start in tqdm(starts, desc=f"eval {split}", unit="batch", file=sys.stderr, disable=not self.progress):
            chunk = examples[start: start + self.batch_size]
            speech_batch = collate(chunk, self.featurize)
            with torch.no_grad():
                nll = {"speech": self.model.token_nll(speech_batch),
                       "text": self.model.token_nll(collate([as_transcript(e) for e in chunk], self.featurize))}
                for k, untrained in enumerate(self.untrained):
                    nll[f"{BASELINE}{k}"] = untrained.token_nll(speech_batch)
            offset = 0
            for ex in chunk:
                n = len(ex.target_ids)
                for key, values in nll.items():
                    sums[ex.task][key] += float(values[offset: offset + n].sum())
                sums[ex.task]["tokens"] += n
                sums[ex.task]["examples"] += 1
                offset += n
        return sums

    def generations(self, split: str, examples: list[Example]) -> list[dict[str, Any]]:
        """Greedy responses to the speech and to the transcript of each example (one batch each), with the
        build's target as reference."""
        tokenizer = self.models.tokenizer
        with torch.no_grad():
            speech = respond_batch(self.model, examples, self.featurize, tokenizer, self.max_new_tokens)
            text = respond_batch(self.model, [as_transcript(ex) for ex in examples], self.featurize, tokenizer,
                                 self.max_new_tokens)
        return [{"key": ex.key, "split": split, "task": ex.task,
                 "reference": tokenizer.decode(list(ex.target_ids), skip_special_tokens=True).strip(),
                 "speech": s, "text": t} for ex, s, t in zip(examples, speech, text, strict=True)]


def _alternate_tasks(examples: list[Example], limit: int | None) -> list[Example]:
    """Up to ``limit`` examples taken from each task in turn (first-seen task order), so every task is sampled."""
    if limit is None:
        return list(examples)
    queues: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        queues[ex.task].append(ex)
    chosen: list[Example] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(q) for q in queues.values()):
        chosen += [q[depth] for q in queues.values() if depth < len(q)][: limit - len(chosen)]
        depth += 1
    return chosen


def _summary(s: dict[str, float]) -> dict[str, Any]:
    """Mean per-token losses of summed NLLs. ``baseline_speech_loss``: the mean of ``baseline_speech_losses`` (one per
    untrained init); ``relative_drop``: how much lower speech is than that; ``text_drop``: the same for the
    transcript input, the most speech could reach; ``gap_closed``: the share of the untrained adapters' excess over
    the transcript input that training removed (None when there was none)."""
    tokens = s["tokens"]
    speech, text = s["speech"] / tokens, s["text"] / tokens
    out: dict[str, Any] = {"speech_loss": speech, "text_loss": text, "gap": speech - text,
                           "tokens": int(tokens), "examples": int(s["examples"])}
    inits = [s[f"{BASELINE}{k}"] / tokens for k in range(sum(key.startswith(BASELINE) for key in s))]
    if inits:
        base = sum(inits) / len(inits)
        out.update(baseline_speech_loss=base, baseline_speech_losses=inits, relative_drop=(base - speech) / base,
                   text_drop=(base - text) / base, gap_closed=(base - speech) / (base - text) if base > text else None)
    return out


def _loss_summary(per_task_sums: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Totals and ``per_task`` summaries of one or more per-task sums (several splits add up)."""
    merged: dict[str, Counter[str]] = defaultdict(Counter)
    for sums in per_task_sums:
        for task, s in sums.items():
            merged[task].update(s)
    everything: Counter[str] = Counter()
    for s in merged.values():
        everything.update(s)
    if not everything["tokens"]:
        return {"examples": 0, "tokens": 0, "per_task": {}}
    return {**_summary(everything), "per_task": {task: _summary(s) for task, s in sorted(merged.items())}}


def _alignment(generations: list[dict[str, Any]], embedder: SentenceEmbedder | None) -> dict[str, Any]:
    """Similarity of speech responses to text responses (behaviour alignment), and of each to the reference."""
    if not generations:
        return {"examples": 0}

    def scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
        col = {k: [r[k] for r in rows] for k in ("speech", "text", "reference")}
        return {"examples": len(rows),
                "speech_vs_text": similarity(col["speech"], col["text"], embedder),
                "speech_vs_reference": similarity(col["speech"], col["reference"], embedder),
                "text_vs_reference": similarity(col["text"], col["reference"], embedder)}

    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in generations:
        by_task[row["task"]].append(row)
    return {**scores(generations), "per_task": {task: scores(rows) for task, rows in sorted(by_task.items())}}
