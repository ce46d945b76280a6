"""Does the corpus teach alignment? A data-scaling run of the bundled trainer on a corpus built from real news text.

Builds one corpus with the demo's settings (voices, LLM, task mix, held-out splits) from the Lee news corpus (350
Australian news articles, ~2,700 sentences and 64k words, shipped as test data in the PyPI package gensim: `pip install
-e .[bench]`), trains the adapter on the first shards holding N training rows for each size in --sizes (smaller sizes
are prefixes of the larger: one build serves all), and evaluates every adapter, and an untrained one (1 step at lr
1e-9 from the same seed), on the same held-out documents, MTBI phrasings and MTBI task. Prints per size: training
rows, steps, the held-out speech loss's drop against untrained adapters, and how alike the responses to speech and
to the transcript are (BLEU, chrF, MiniLM cosine), in total and per task.

    .venv/bin/python benchmarks/bench_alignment.py --out bench_alignment_out            # full: a few hours, 2 cores
    .venv/bin/python benchmarks/bench_alignment.py --out OUT --docs 130 --sizes 250,1000 --steps 150,600
    .venv/bin/python benchmarks/bench_alignment.py --out OUT --resume                  # continue where it stopped

Every part is kept in OUT (build/, subsets/, adapters/, eval-*.json, results.json, results.md); --resume reuses
what is finished (the build continues its own way, a trained adapter with the asked steps and an evaluation
with the asked settings are not redone).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from align_data.config import load_build_config
from align_data.errors import AlignDataError
from align_data.pipeline.build import build as run_build
from align_data.trainer import train
from align_data.trainer.checkpoint import STATE_FILE
from align_data.trainer.config import load_train_config
from align_data.trainer.data import shard_files
from align_data.trainer.evaluate import HELDOUT_SPLITS, evaluate
from align_data.trainer.model import load_frozen_models, resolve_device
from align_data.trainer.similarity import SentenceEmbedder

ROOT = Path(__file__).resolve().parents[1]
LEE_FILES = ("lee_background.cor", "lee.cor")  # 300 + 50 articles, one per line
UNTRAINED = 0  # the size key of the untrained adapter


def lee_corpus(folder: Path) -> tuple[Path, dict[str, int]]:
    """The Lee articles as one text file, one paragraph (document) each, in gensim's order; with counts."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise AlignDataError("the alignment benchmark reads the Lee news corpus from the gensim package: "
                             "pip install -e '.[bench]' (or pip install gensim==4.4.0)")
    data = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"
    docs: list[str] = []
    for name in LEE_FILES:
        lines = (data / name).read_text(encoding="utf-8", errors="replace").splitlines()
        docs += [" ".join(line.split()) for line in lines if line.strip()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lee.txt"
    text = "\n\n".join(docs) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    sentences = sum(len(re.findall(r"[.!?](?:\s|$)", d)) for d in docs)
    return path, {"documents": len(docs), "sentences": sentences, "words": sum(len(d.split()) for d in docs)}


def build_corpus(out: Path, corpus: Path, docs: int | None, resume: bool) -> dict[str, Any]:
    """The corpus built with configs/demo.toml's settings on ``corpus`` (its first ``docs`` documents)."""
    build = out / "build"
    if resume and (build / "manifest.json").is_file():
        return json.loads((build / "manifest.json").read_text())
    config = load_build_config(ROOT / "configs/demo.toml", [
        f'sources=[{{ name = "lee", path = "{corpus}", format = "txt", txt_unit = "paragraph", '
        f'license = "gensim test data (Lee et al. 2005 news corpus); for research" }}]'])
    summary = run_build(config, build, limit=docs, resume=resume and build.exists(), overwrite=not resume)
    if summary.failed:
        raise AlignDataError(f"{len(summary.failed)} shards failed: {summary.failed}")
    return summary.manifest


def train_rows(path: Path) -> int:
    return sum(s == "train" for s in pq.read_table(path, columns=["split"]).column("split").to_pylist())


def subset(build: Path, rows: int, out: Path) -> tuple[Path, int]:
    """A folder whose shards/ links the build's first shards that together hold at least ``rows`` training rows
    (all of them when the build has fewer); returns it and the training rows it holds."""
    folder = out / "subsets" / f"rows-{rows}"
    shards = folder / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    for old in shards.iterdir():
        old.unlink()
    held = 0
    for path in shard_files(build):
        (shards / path.name).symlink_to(path.resolve())
        held += train_rows(path)
        if held >= rows:
            break
    return folder, held


def train_adapter(data: Path, ckpt: Path, config: Any, models: Any, resume: bool) -> dict[str, Any]:
    """Train (or, with ``resume``, reuse or continue) the adapter in ``ckpt``."""
    state = ckpt / STATE_FILE
    if resume and state.is_file() and json.loads(state.read_text())["step"] >= config.steps:
        return {"steps": config.steps, "reused": True}
    if not resume and ckpt.exists():
        shutil.rmtree(ckpt)
    began = time.perf_counter()
    result = train(data, ckpt, config, resume=resume and state.is_file(), models=models)
    return {**{k: result[k] for k in ("steps", "final_loss", "seconds_per_step", "examples", "encoder_cache")},
            "seconds": round(time.perf_counter() - began, 1)}


def evaluate_adapter(build: Path, ckpt: Path, saved: Path, models: Any, embedder: Any, generate: int,
                     resume: bool) -> dict[str, Any]:
    """The held-out evaluation of one adapter, kept in ``saved`` (reused with ``resume`` when its settings match
    and the checkpoint has not moved on)."""
    step = json.loads((ckpt / STATE_FILE).read_text())["step"]
    if resume and saved.is_file():
        old = json.loads(saved.read_text())
        if old["step"] == step and old["settings"]["generate"] == generate:
            return old
    began = time.perf_counter()
    result = evaluate(build, ckpt, splits=list(HELDOUT_SPLITS), generate=generate, models=models,
                      embedder=embedder)
    result["seconds"] = round(time.perf_counter() - began, 1)
    saved.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return result


def _cosine(part: dict[str, Any]) -> float | None:
    return (part.get("alignment", {}).get("speech_vs_text") or {}).get("cosine")


def summarize(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per size: rows, steps, loss drop and speech-vs-text similarity, in total and per task."""
    table = {}
    for size, run in sorted(results.items()):
        ev = run["eval"]
        alignment = ev["alignment"]
        per_task = {}
        for task in sorted(set(ev.get("per_task", {})) | set(alignment.get("per_task", {}))):
            loss = ev.get("per_task", {}).get(task, {})
            similar = alignment.get("per_task", {}).get(task, {})
            per_task[task] = {"examples": loss.get("examples"), "drop": loss.get("relative_drop"),
                              "generated": similar.get("examples", 0), **(similar.get("speech_vs_text") or {})}
        table[str(size)] = {"label": "untrained" if size == UNTRAINED else f"{run['rows']} rows",
                            "rows": run["rows"], "steps": run["steps"], "examples": ev["examples"],
                            "drop": ev.get("relative_drop"), "gap_closed": ev.get("gap_closed"),
                            "generated": alignment.get("examples", 0), **(alignment.get("speech_vs_text") or {}),
                            "splits": {name: {"drop": part.get("relative_drop"), "cosine": _cosine(part)}
                                       for name, part in ev["splits"].items()},
                            "per_task": per_task}
    return table


def _num(value: Any, pattern: str = "{:.3f}") -> str:
    return "—" if value is None else pattern.format(value)


def markdown(table: dict[str, Any], header: str) -> str:
    """The results as Markdown: totals per size, then per task."""
    lines = [header, "", "| adapter | train rows | steps | held-out examples | loss drop vs untrained | gap closed | "
             "generated | BLEU | chrF | cosine |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.values():
        lines.append(f"| {row['label']} | {row['rows']} | {row['steps']} | {row['examples']} | "
                     f"{_num(row['drop'], '{:.1%}')} | {_num(row['gap_closed'], '{:.1%}')} | {row['generated']} | "
                     f"{_num(row.get('bleu'), '{:.1f}')} | {_num(row.get('chrf'), '{:.1f}')} | "
                     f"{_num(row.get('cosine'))} |")
    lines += ["", "Per task (speech-vs-transcript response cosine; loss drop vs untrained adapters):", "",
              "| adapter | task | examples | loss drop | generated | BLEU | chrF | cosine |",
              "|---|---|---|---|---|---|---|---|"]
    for row in table.values():
        for task, t in row["per_task"].items():
            lines.append(f"| {row['label']} | {task} | {t['examples']} | {_num(t['drop'], '{:.1%}')} | "
                         f"{t['generated']} | {_num(t.get('bleu'), '{:.1f}')} | {_num(t.get('chrf'), '{:.1f}')} | "
                         f"{_num(t.get('cosine'))} |")
    return "\n".join(lines) + "\n"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_alignment_out", help="where every part is kept")
    parser.add_argument("--docs", type=int, default=None, help="build from the first N articles (default: all 350)")
    parser.add_argument("--sizes", type=_ints, default=[500, 2000], help="training rows per run, comma-separated")
    parser.add_argument("--steps", type=_ints, default=[250, 1000],
                        help="optimizer steps per size (one value: the same for all)")
    parser.add_argument("--generate", type=int, default=64, help="held-out examples per split whose responses "
                        "are generated and compared")
    parser.add_argument("--train-config", type=Path, default=ROOT / "configs/demo_train.toml")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    parser.add_argument("--resume", action="store_true", help="reuse what a previous run in --out finished")
    args = parser.parse_args()
    steps = args.steps * len(args.sizes) if len(args.steps) == 1 else args.steps
    if len(steps) != len(args.sizes):
        parser.error(f"--steps has {len(steps)} values for {len(args.sizes)} sizes")
    began = time.perf_counter()
    try:
        _run(args, steps, began)
    except AlignDataError as exc:
        sys.exit(f"error: {exc}")


def _run(args: argparse.Namespace, steps: list[int], began: float) -> None:
    out = args.out
    corpus, counts = lee_corpus(out / "corpus")
    print(f"corpus: Lee news articles, {counts['documents']} documents, ~{counts['sentences']} sentences, "
          f"{counts['words']} words; building {args.docs or 'all'} of them", flush=True)
    t0 = time.perf_counter()
    manifest = build_corpus(out, corpus, args.docs, args.resume)
    build_s = time.perf_counter() - t0
    build = out / "build"
    print(f"build: {manifest['rows']} rows, {manifest['filtered']} filtered, {manifest['errors']} errors "
          f"({build_s:.0f} s)", flush=True)
    timings: dict[str, float] = {"build": round(build_s, 1)}
    runs: dict[int, dict[str, Any]] = {}
    models = embedder = None
    (out / "adapters").mkdir(parents=True, exist_ok=True)
    plan = [(UNTRAINED, 1, min(args.sizes))] + [(size, n, size) for size, n in zip(args.sizes, steps, strict=True)]
    for size, n_steps, data_rows in plan:
        data, held = subset(build, data_rows, out)
        overrides = {"steps": n_steps, "decay_steps": n_steps, "save_every": n_steps, "threads": args.threads,
                     **({"lr": 1e-9, "warmup": 0} if size == UNTRAINED else {})}
        config = load_train_config(args.train_config, {k: v for k, v in overrides.items() if v is not None})
        if models is None:
            device, dtype = resolve_device(config)
            models = load_frozen_models(config, device, dtype)
            embedder = SentenceEmbedder(device=device)
        name = "untrained" if size == UNTRAINED else f"rows-{size}"
        t0 = time.perf_counter()
        trained = train_adapter(data, out / "adapters" / name, config, models, args.resume)
        timings[f"train {name}"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        result = evaluate_adapter(build, out / "adapters" / name, out / f"eval-{name}.json", models, embedder,
                                  args.generate, args.resume)
        timings[f"eval {name}"] = round(time.perf_counter() - t0, 1)
        runs[size] = {"rows": 0 if size == UNTRAINED else held, "steps": 0 if size == UNTRAINED else n_steps,
                      "train": trained, "eval": result}
        print(f"{name}: {held} training rows, {n_steps} steps, held-out loss drop "
              f"{_num(result.get('relative_drop'), '{:.1%}')}, speech-vs-text cosine {_num(_cosine(result))} "
              f"({timings[f'train {name}']:.0f} s training, {timings[f'eval {name}']:.0f} s eval)", flush=True)
    table = summarize(runs)
    total = time.perf_counter() - began
    header = (f"Alignment benchmark: {manifest['rows']} rows built from {args.docs or counts['documents']} Lee "
              f"articles; held-out examples generated per split: {args.generate}; took {total / 60:.0f} min "
              f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    text = markdown(table, header)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"corpus": counts, "docs": args.docs, "manifest_rows":
                                                  manifest["rows"], "timings_s": timings, "total_s": round(total, 1),
                                                  "table": table}, indent=1), encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
