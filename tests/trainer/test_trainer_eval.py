"""Evaluation on tiny models: metrics on known strings, deterministic greedy generation, per-split sections, report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from align_data.errors import AlignDataError
from align_data.schemas import records_to_table
from align_data.trainer import TrainConfig, train
from align_data.trainer.data import Featurizer, as_transcript, load_examples, read_records
from align_data.trainer.evaluate import HELDOUT_SPLITS, _alternate_tasks, evaluate, split_counts
from align_data.trainer.generate import greedy_batch, greedy_ids, prompt_embeddings, respond, respond_batch
from align_data.trainer.similarity import SentenceEmbedder, bleu, chrf, similarity
from align_data.trainer.model import SpeechLM, build_adapter, load_frozen_models
from align_data.trainer.report import GENERATIONS_FILE, PLOTS, REPORT_DIR, REPORT_FILE, write_report

# tiny-000 train (continuation), tiny-001 held-out document (interleaved), tiny-002 an MTBI row asked in a held-out
# phrasing, tiny-003 a row of a held-out MTBI task; tiny-999 (no targets) train.
SPLITS = {"tiny-001": "heldout", "tiny-002": "heldout_prompt", "tiny-003": "heldout_task"}
MTBI = {"tiny-002": ("summarize", "summarize-5"), "tiny-003": ("translate", "translate-1")}


@pytest.fixture(scope="module")
def split_build(tiny_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny build with held-out document, MTBI phrasing and MTBI task rows, as an MTBI build tags them."""
    records = []
    for record in read_records([tiny_build / "shards" / "00000.parquet"]):
        if record.id in MTBI:
            task, prompt_id = MTBI[record.id]
            targets = tuple(dataclasses.replace(t, task=task, prompt_id=prompt_id) for t in record.targets)
            record = dataclasses.replace(record, task="mtbi", targets=targets)
        records.append(dataclasses.replace(record, split=SPLITS.get(record.id, "train")))
    root = tmp_path_factory.mktemp("split-build")
    (root / "shards").mkdir()
    pq.write_table(records_to_table(records, "test"), root / "shards" / "00000.parquet")
    return root


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


@pytest.fixture(scope="module")
def trained(split_build: Path, tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    whisper, llm = tiny_models
    out = tmp_path_factory.mktemp("ckpt")
    train(split_build, out, TrainConfig(steps=3, whisper=str(whisper), llm=str(llm), threads=1, seed=1, lr=3e-3,
                                        split=None), progress=False)
    return out


def test_metrics_on_known_strings(embedder: SentenceEmbedder) -> None:
    same = ["The kettle boiled over while she read the morning paper.", "By night the wind had dropped."]
    other = ["Quarterly invoices are due on Friday.", "Press the green button twice."]
    assert bleu(same, same) == pytest.approx(100.0) and chrf(same, same) == pytest.approx(100.0)
    assert bleu(same, other) < 5 and chrf(same, other) < 20
    assert embedder.cosine(same, same) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert max(embedder.cosine(same, other)) < 0.3
    close = embedder.cosine(["The cat sat on the mat."], ["A cat was sitting on the rug."])[0]
    assert 0.5 < close < 0.99  # a paraphrase scores between disjoint and identical
    scores = similarity(same, same, embedder)
    assert scores["cosine"] == pytest.approx(1.0, abs=1e-5) and similarity(same, other, None)["cosine"] is None


@pytest.fixture(scope="module")
def speech_lm(tiny_models: tuple[Path, Path]):
    whisper, llm = tiny_models
    frozen = load_frozen_models(TrainConfig(whisper=str(whisper), llm=str(llm)), torch.device("cpu"), torch.float32)
    return SpeechLM(frozen.encoder, build_adapter(frozen.encoder, frozen.lm, seed=0), frozen.lm).eval(), frozen


def test_greedy_from_embeddings_matches_the_lms_own_generate(tiny_models: tuple[Path, Path]) -> None:
    lm = AutoModelForCausalLM.from_pretrained(tiny_models[1], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[1])
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer("The old dog slept")["input_ids"]]])
    with torch.no_grad():
        embeds = lm.get_input_embeddings()(ids)
        ours = greedy_ids(lm, embeds, max_new_tokens=12, eos_token_id=None, stop_text=None)
        theirs = lm.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, min_new_tokens=12,
                             pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    assert len(ours) == 12 and ours == theirs


def test_generation_is_deterministic_and_bounded(speech_lm, tiny_build: Path) -> None:
    model, frozen = speech_lm
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    featurize = Featurizer(frozen.extractor, 30.0)
    example = examples[2]  # speech, text, speech
    embeds = prompt_embeddings(model, example, featurize)
    prefix = sum(len(p.ids) for p in example.pieces if hasattr(p, "ids"))
    assert embeds.shape[1] > prefix  # the speech spans are in, the response is not
    first = greedy_ids(frozen.lm, embeds, max_new_tokens=5, eos_token_id=None, stop_text=None)
    again = greedy_ids(frozen.lm, prompt_embeddings(model, example, featurize), max_new_tokens=5, eos_token_id=None,
                       stop_text=None)
    assert first == again and len(first) == 5
    text = respond(model, as_transcript(example), featurize, frozen.tokenizer, 6)
    assert text == respond(model, as_transcript(example), featurize, frozen.tokenizer, 6)


def test_generation_stops_at_eos_and_newline(speech_lm, tiny_build: Path) -> None:
    model, frozen = speech_lm
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    embeds = prompt_embeddings(model, examples[0], Featurizer(frozen.extractor, 30.0))
    free = greedy_ids(frozen.lm, embeds, max_new_tokens=8, eos_token_id=None, stop_text=None)
    first_new = next((i for i, t in enumerate(free) if i and t not in free[:i]), 0)  # random models repeat
    assert greedy_ids(frozen.lm, embeds, max_new_tokens=8, eos_token_id=free[first_new], stop_text=None) == \
        free[:first_new]
    decoded = frozen.tokenizer.decode([free[1]])
    stopped = greedy_ids(frozen.lm, embeds, max_new_tokens=4, eos_token_id=None, tokenizer=frozen.tokenizer,
                         stop_text=decoded)
    assert len(stopped) <= 1


def test_generated_examples_alternate_tasks(speech_lm, tiny_build: Path) -> None:
    _, frozen = speech_lm
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    many = examples + examples  # continuation, interleaved, interleaved, description, twice
    assert [e.task for e in _alternate_tasks(many, 3)] == ["continuation", "interleaved", "description"]
    assert len(_alternate_tasks(many, None)) == 8 and _alternate_tasks(many, 0) == []


def test_eval_reports_heldout_splits_apart(split_build: Path, trained: Path, embedder: SentenceEmbedder) -> None:
    assert split_counts(split_build) == {"heldout": 1, "heldout_prompt": 1, "heldout_task": 1, "train": 2}
    result = evaluate(split_build, trained, splits=HELDOUT_SPLITS, generate=2, max_new_tokens=6,
                      embedder=embedder, device="cpu", progress=False)
    sections = result["splits"]
    assert list(sections) == ["heldout", "heldout_prompt", "heldout_task"]  # no train rows evaluated
    assert set(sections["heldout_prompt"]["per_task"]) == {"summarize"}
    assert set(sections["heldout_task"]["per_task"]) == {"translate"}
    assert set(sections["heldout"]["per_task"]) == {"interleaved"}
    assert result["examples"] == 3 and result["tokens"] == sum(s["tokens"] for s in sections.values())
    for section in (result, *sections.values()):
        assert section["gap"] == pytest.approx(section["speech_loss"] - section["text_loss"])
        base = section["baseline_speech_loss"]
        assert section["relative_drop"] == pytest.approx((base - section["speech_loss"]) / base)
        assert section["text_drop"] == pytest.approx((base - section["text_loss"]) / base)
        if base > section["text_loss"]:
            closed = section["relative_drop"] / section["text_drop"]
            assert section["gap_closed"] == pytest.approx(closed)
        else:
            assert section["gap_closed"] is None
    assert result["baseline_speech_loss"] != result["speech_loss"]  # three steps moved the adapter
    assert [g["split"] for g in result["generations"]] == ["heldout", "heldout_prompt", "heldout_task"]
    assert all(isinstance(g[k], str) for g in result["generations"] for k in ("speech", "text", "reference"))
    assert result["generations"][1]["reference"] == "The surface warmed faster than the deep water."
    pair = sections["heldout_task"]["alignment"]["speech_vs_text"]
    assert 0 <= pair["bleu"] <= 100 and 0 <= pair["chrf"] <= 100 and -1 <= pair["cosine"] <= 1 + 1e-6
    again = evaluate(split_build, trained, splits=HELDOUT_SPLITS, generate=2, max_new_tokens=6, embedder=embedder,
                     device="cpu", progress=False)
    assert again["generations"] == result["generations"] and again["speech_loss"] == result["speech_loss"]


@pytest.mark.parametrize("adapter", ["conv", "qformer"])
def test_untrained_checkpoint_is_its_own_baseline(split_build: Path, tiny_models: tuple[Path, Path],
                                                  tmp_path: Path, adapter: str) -> None:
    whisper, llm = tiny_models
    train(split_build, tmp_path, TrainConfig(steps=1, lr=1e-9, whisper=str(whisper), llm=str(llm), threads=1,
                                             seed=5, split=None, grad_clip=None, adapter=adapter, qformer_queries=4),
          progress=False)
    result = evaluate(split_build, tmp_path, splits=["heldout"], generate=0, device="cpu", progress=False)
    own, *others = result["baseline_speech_losses"]  # untrained adapters of seeds 5, 6, 7
    assert own == pytest.approx(result["speech_loss"], rel=1e-4)  # one step at lr 1e-9 ≈ the seed's init
    assert len(others) == 2 and len({own, *others}) == 3  # other inits, other losses
    assert result["baseline_speech_loss"] == pytest.approx((own + sum(others)) / 3)
    assert result["settings"]["baseline_seeds"] == [5, 6, 7]
    alone = evaluate(split_build, tmp_path, splits=["heldout"], generate=0, baseline_inits=1, device="cpu",
                     progress=False)
    assert alone["relative_drop"] == pytest.approx(0.0, abs=1e-4) and alone["baseline_speech_losses"] == [own]
    assert result["alignment"] == {"examples": 0} and result["generations"] == []


def test_eval_refuses_a_build_without_heldout_rows(tiny_build: Path, trained: Path) -> None:
    with pytest.raises(AlignDataError, match="no rows of split heldout.*'train': 5"):
        evaluate(tiny_build, trained, splits=HELDOUT_SPLITS, generate=0, device="cpu", progress=False)


def test_report_files_are_written_and_load(split_build: Path, trained: Path, embedder: SentenceEmbedder) -> None:
    result = evaluate(split_build, trained, splits=HELDOUT_SPLITS, generate=1, max_new_tokens=4, embedder=embedder,
                      device="cpu", progress=False)
    paths = write_report(result, trained)
    folder = trained / REPORT_DIR
    body = json.loads((folder / REPORT_FILE).read_text())
    assert body["speech_loss"] == result["speech_loss"] and "generations" not in body
    assert set(body["splits"]) == set(HELDOUT_SPLITS) and body["train"]["steps"] == 3
    assert body["files"]["train_curves"] == PLOTS["train_curves"]
    lines = (folder / GENERATIONS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == result["generations"] and len(lines) == 3
    import matplotlib.image

    for name in PLOTS:
        image = matplotlib.image.imread(paths[name])
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    assert not list(folder.glob(".*"))  # no temporaries left


def test_eval_command_takes_ckpt_then_build(split_build: Path, trained: Path) -> None:
    from typer.testing import CliRunner

    from align_data.cli import _change, app

    assert (_change(0.2), _change(-0.164)) == ("20.0% lower", "16.4% higher")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(trained), str(split_build), "--generate", "1", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    assert "heldout_prompt" in result.output and "heldout_task" in result.output
    assert "untrained adapters" in result.output
    body = json.loads((trained / REPORT_DIR / REPORT_FILE).read_text())
    assert body["settings"]["generate"] == 1 and len(body["splits"]) == 3
    lines = " ".join(result.output.split())  # rich wraps long lines
    assert f"held-out documents: speech loss {body['splits']['heldout']['speech_loss']:.4f}" in lines
    assert f"all evaluated rows: speech loss {body['speech_loss']:.4f}" in lines
    assert f"{_change(body['relative_drop'])} (the transcript as text: {_change(body['text_drop'])})" in lines
    older = runner.invoke(app, ["eval", str(split_build), "--ckpt", str(trained), "--split", "heldout",
                                "--generate", "0", "--no-baseline"])
    assert older.exit_code == 0, older.output
    body = json.loads((trained / REPORT_DIR / REPORT_FILE).read_text())
    assert list(body["splits"]) == ["heldout"] and "baseline_speech_loss" not in body
    missing = runner.invoke(app, ["eval", str(trained)])
    assert missing.exit_code == 1 and "missing the build folder" in missing.output


def test_batched_greedy_gives_each_row_its_own_answer(speech_lm, tiny_build: Path) -> None:
    """Prompts of different lengths decoded in one left-padded batch get the tokens each gets alone, stopping rows
    apart (a stopped row adds nothing while the others go on)."""
    model, frozen = speech_lm
    examples, _ = load_examples(tiny_build, frozen.tokenizer, max_target_tokens=32)
    featurize = Featurizer(frozen.extractor, 30.0)
    prompts = [prompt_embeddings(model, ex, featurize)[0] for ex in examples[:3]]
    prompts.append(prompts[0][:3])  # a much shorter one: most of its row is padding
    assert len({p.shape[0] for p in prompts}) > 1
    alone = [greedy_ids(frozen.lm, p.unsqueeze(0), max_new_tokens=6, eos_token_id=None, stop_text=None)
             for p in prompts]
    together = greedy_batch(frozen.lm, prompts, max_new_tokens=6, eos_token_id=None, stop_text=None)
    assert together == alone and all(len(ids) == 6 for ids in together)
    stop = alone[1][2]  # the third token of row 1 ends row 1 (and any row that meets it) only
    stopped = greedy_batch(frozen.lm, prompts, max_new_tokens=6, eos_token_id=stop, stop_text=None)
    assert stopped[1] == alone[1][: alone[1].index(stop)]
    for row, ids in enumerate(alone):
        assert stopped[row] == (ids[: ids.index(stop)] if stop in ids else ids)
    texts = respond_batch(model, examples[:3], featurize, frozen.tokenizer, 6)
    assert texts == [respond(model, ex, featurize, frozen.tokenizer, 6) for ex in examples[:3]]


def test_evaluation_is_the_same_for_any_generation_batch(tiny_build: Path, trained: Path) -> None:
    """Decoding the responses one at a time or all together changes no response and no score."""
    kwargs = dict(splits=None, generate=None, max_new_tokens=5, embed=False, baseline=False, progress=False)
    one = evaluate(tiny_build, trained, generate_batch=1, **kwargs)
    many = evaluate(tiny_build, trained, generate_batch=3, **kwargs)
    assert len(one["generations"]) >= 4
    assert one["generations"] == many["generations"] and one["alignment"] == many["alignment"]
