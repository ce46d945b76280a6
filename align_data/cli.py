"""The ``align-data`` command: thin typer commands over the library; user errors print one line, exit 1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from align_data.errors import AlignDataError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Build speech-text alignment corpora (BLSP continuations, InSerter interleaving, DeSTA2 "
         "descriptions) as sharded Parquet + WebDataset, inspect and validate them, and train an adapter.")
console = Console(stderr=False, emoji=False)  # voice ids like "hibari:heart" are not emoji codes
err = Console(stderr=True, emoji=False)


def _fail(exc: AlignDataError) -> None:
    err.print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(1)


@app.command()
def build(
    config: Path = typer.Argument(..., help="Build config (TOML), e.g. configs/demo.toml."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder for shards, errors and manifest: a path or an "
                                                     "fsspec URL (s3://bucket/prefix, gs://..., file://...)."),
    runner: Optional[str] = typer.Option(None, help="local (in-process loop) or ray; default: the config's runner.kind."),
    limit: Optional[int] = typer.Option(None, min=0, help="Read at most this many source documents."),
    seed: Optional[int] = typer.Option(None, help="Override the config's global seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue a build in OUT: verified shards are skipped."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous build in OUT."),
    ray_address: Optional[str] = typer.Option(None, help="Join a Ray cluster (e.g. ray://head:10001 or auto)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set llm.max_new_tokens=32 (repeatable)."),
) -> None:
    """Turn the config's text sources into shards: segments → speech → attributes → targets."""
    from align_data.config import load_build_config
    from align_data.pipeline.build import build as run_build

    overrides = list(set_)
    if seed is not None:
        overrides.append(f"seed={seed}")
    if ray_address:
        overrides.append(f"runner.ray_address={ray_address}")
    if runner not in (None, "local", "ray"):
        _fail(AlignDataError(f"--runner {runner!r}: choose local or ray"))
    try:
        cfg = load_build_config(config, overrides)
        summary = run_build(cfg, out, runner=runner, limit=limit, resume=resume, overwrite=overwrite)
    except AlignDataError as exc:
        _fail(exc)
    m = summary.manifest
    console.print(f"built {out}: {m['rows']} rows, {m['errors']} errors, {m['filtered']} filtered from "
                  f"{m['candidates']} segments of {m['input_docs']} documents; "
                  f"{m['audio_seconds'] / 3600:.3f} h audio; shards written {summary.written}, skipped "
                  f"{summary.skipped}, failed {len(summary.failed)}; {summary.seconds:.1f}s")
    if summary.failed:
        err.print(f"[red]{len(summary.failed)} shard(s) failed[/red]; rerun with --resume to retry them")
        raise typer.Exit(1)


@app.command()
def plan(
    config: Path = typer.Argument(..., help="Build config (TOML), e.g. configs/demo.toml."),
    limit: Optional[int] = typer.Option(None, min=0, help="Plan at most this many source documents (as build "
                                                         "--limit: only what they need is read)."),
    estimate: bool = typer.Option(False, "--estimate", help="Also estimate segments, rows per task, audio hours, LLM "
                                                            "calls and tokens, worker-seconds per stage and wall time, "
                                                            "and name the bottleneck stage."),
    cpus: Optional[float] = typer.Option(None, min=0.1, help="--estimate: CPUs of the cluster (workers = CPUs / "
                                                             "runner.cpus_per_worker); default: the config's runner."),
    gpus: Optional[float] = typer.Option(None, min=0, help="--estimate: GPUs of the cluster; with runner.layout = "
                                                           "'split' the LLM stages run on them."),
    rates: Optional[str] = typer.Option(None, help="--estimate: stage rates from this finished build's manifest "
                                                   "(a folder or URL); default: a pilot build of --pilot-shards "
                                                   "shards, here, in a temporary folder."),
    pilot_shards: int = typer.Option(2, min=1, help="--estimate without --rates: shards the pilot build runs."),
    startup_s: float = typer.Option(10.0, min=0, help="--estimate: seconds outside the stages (Ray start, model "
                                                      "loading) added to the wall time."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan (and estimate) as JSON."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: --set shards.docs_per_shard=16."),
) -> None:
    """The shard plan without running it: per source its reader, files, bytes, shards and documents, from the
    sources' metadata (txt/jsonl sizes, Parquet footers, a hub dataset's file list). With --estimate, the expected
    work and wall time on a cluster (--cpus 64 --gpus 8) from measured stage rates, and the bottleneck stage.
    Cross-shard dedup is not run here (it reads every document): its drops are not in the counts."""
    import dataclasses
    import time

    from align_data.config import load_build_config
    from align_data.pipeline.estimate import estimate as make_estimate
    from align_data.pipeline.estimate import pilot_rates, rates_from_build, summarize_plan
    from align_data.pipeline.plan import plan_shards

    try:
        cfg = load_build_config(config, list(set_))
        t0 = time.perf_counter()
        specs = plan_shards(cfg, limit)
        summary = summarize_plan(cfg, specs, time.perf_counter() - t0)
        result = None
        if estimate:
            measured = rates_from_build(rates) if rates else pilot_rates(cfg, pilot_shards)
            result = make_estimate(cfg, summary, measured, cpus, gpus, startup_s)
    except AlignDataError as exc:
        _fail(exc)
    if as_json:
        data = {"plan": dataclasses.asdict(summary)}
        if result is not None:
            data["estimate"] = dataclasses.asdict(result) | {"rates_from": measured.origin}
        typer.echo(json.dumps(data, indent=1, sort_keys=True))
        return
    _print_plan(summary)
    if result is not None:
        _print_estimate(result, measured.origin)


def _print_plan(summary) -> None:
    table = Table(title=f"plan ({summary.seconds:.2f} s to plan)")
    for col in ("source", "read as", "files", "bytes", "shards", "documents"):
        table.add_column(col, justify="left" if col in ("source", "read as") else "right")
    for s in summary.sources:
        docs = f"~{s.docs}" if s.estimated else str(s.docs)
        table.add_row(s.name, s.reader if not s.problem else "unreadable", str(s.files),
                      "-" if s.bytes is None else f"{s.bytes:,}", str(s.shards), docs)
    table.add_row("total", "", "", "", str(summary.shards), f"~{summary.docs}" if summary.estimated else
                  str(summary.docs))
    console.print(table)
    for s in summary.sources:
        if s.problem:
            err.print(f"[yellow]warning:[/yellow] {s.problem}", highlight=False)
    if summary.estimated:
        console.print("~: byte ranges of a large txt/jsonl source; each holds about shards.docs_per_shard documents "
                      "(their mean size in the first MiB), counted exactly when read", highlight=False)


def _print_estimate(e, origin: str) -> None:
    table = Table(title=f"estimate (rates from {origin})", show_header=False)
    table.add_row("documents", str(e.docs))
    table.add_row("segments", str(e.segments))
    table.add_row("rows", str(e.rows))
    for task, n in e.rows_per_task.items():
        table.add_row(f"  rows {task}", str(n))
    table.add_row("audio hours", f"{e.audio_hours:.3f}")
    table.add_row("LLM calls", str(e.llm_calls))
    table.add_row("LLM tokens in / out", f"{e.tokens_in} / {e.tokens_out}")
    for stage, seconds in e.stage_worker_s.items():
        table.add_row(f"  {stage} worker-s", f"{seconds:.1f}")
    table.add_row("workers (CPU / GPU)", f"{e.cpu_workers} / {e.gpu_workers}")
    table.add_row("wall time", f"{e.wall_s:.0f} s ({e.wall_s / 3600:.2f} h)")
    table.add_row("bottleneck", e.bottleneck)
    console.print(table)


@app.command()
def inspect(
    out: str = typer.Argument(..., help="A build folder (a path or a URL such as s3://bucket/prefix)."),
    shard: Optional[int] = typer.Option(None, help="Show rows of this shard."),
    rows: int = typer.Option(3, min=0, help="How many rows (and errors) of --shard to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON (totals, tasks, voices, "
                                                       "configured shares, stages, shards) instead of tables."),
) -> None:
    """Summary of a build: rows, errors, filtered, audio hours, tasks, voices, stages, per-shard table."""
    from align_data.pipeline.summary import expected_voice_shares, load_manifest, shard_errors, shard_rows

    try:
        if as_json:
            from align_data.report import manifest_summary

            if shard is not None:
                raise AlignDataError("--json summarizes the whole build; drop --shard")
            typer.echo(json.dumps(manifest_summary(out), indent=1, sort_keys=True))
            return
        m = load_manifest(out)
        if shard is not None:
            _print_rows(shard_rows(out, shard, rows), shard_errors(out, shard, rows))
            return
    except AlignDataError as exc:
        _fail(exc)
    _print_manifest(m, expected_voice_shares(out))


def _print_manifest(m: dict, expected: dict[str, dict[str, float]]) -> None:
    from align_data.pipeline.summary import fold_wildcard_voices

    head = Table(title="build", show_header=False)
    for key in ("rows", "errors", "filtered", "candidates", "input_docs", "planned_docs",
                "complete_shards", "planned_shards"):
        head.add_row(key, "counted as read (byte ranges)" if m[key] is None else str(m[key]))
    source_filtered = m["stages"].get("source", {}).get("filtered", {})
    head.add_row("duplicates dropped (in a shard / across shards)",
                 f"{source_filtered.get('duplicate', 0)} / {source_filtered.get('cross_shard_duplicate', 0)}")
    head.add_row("audio hours", f"{m['audio_seconds'] / 3600:.3f}")
    head.add_row("config hash", m["config_hash"])
    head.add_row("schema / package", f"{m['schema_version']} / {m['package_version']}")
    console.print(head)
    backends: dict[str, int] = {}
    for key, n in m["voices"].items():
        backends[key.split(":", 1)[0]] = backends.get(key.split(":", 1)[0], 0) + n
    voices = fold_wildcard_voices(m["voices"], expected.get("voices", {}))
    groups = (("tasks", m["tasks"]), ("voices", voices), ("backends", backends),
              ("genders", m.get("genders", {})), ("splits", m.get("splits", {})))
    for title, counts in groups:
        table = Table(title=title)
        table.add_column(title[:-1])
        table.add_column("rows", justify="right")
        table.add_column("share", justify="right")
        configured = expected.get(title)
        if configured:
            table.add_column("configured", justify="right")
        total = max(1, sum(counts.values()))
        for k in sorted(set(counts) | set(configured or {})):
            cells = [k, str(counts.get(k, 0)), f"{100 * counts.get(k, 0) / total:.1f}%"]
            if configured:
                cells.append(f"{100 * configured.get(k, 0.0):.1f}%")
            table.add_row(*cells)
        console.print(table)
    stages = Table(title="stages")
    for col in ("stage", "in", "passed", "filtered", "errors", "seconds"):
        stages.add_column(col)
    for name in m.get("stage_order", list(m["stages"])):
        c = m["stages"][name]
        stages.add_row(name, str(c["total"]), str(c["passed"]),
                       ", ".join(f"{k}={v}" for k, v in c["filtered"].items()) or "-",
                       ", ".join(f"{k}={v}" for k, v in c["errors"].items()) or "-",
                       f"{m['stage_seconds'].get(name, 0):.1f}")
    console.print(stages)
    _print_repairs(m)
    shards = Table(title="shards")
    for col in ("shard", "docs", "rows", "errors", "filtered", "audio s"):
        shards.add_column(col, justify="right")
    for s in m["shards"]:
        shards.add_row(str(s["shard_id"]), str(s["input_docs"]), str(s["rows"]), str(s["errors"]),
                       str(s["filtered"]), f"{s['audio_seconds']:.1f}")
    console.print(shards)
    if m["failed_shards"]:
        err.print(f"[red]failed shards:[/red] {', '.join(m['failed_shards'])}")


def _print_repairs(m: dict) -> None:
    """Records filtered per contradicted attribute, and what the repairs before the filters did."""
    from align_data.report.summary import filtered_by_attribute, repair_counts

    described = m.get("tasks", {}).get("description", 0)
    by_attribute = filtered_by_attribute(m)
    faithful = Table(title=f"description faithfulness ({described} description rows kept)")
    faithful.add_column("attribute")
    faithful.add_column("records filtered as target_unfaithful", justify="right")
    for attribute, n in by_attribute.items():
        faithful.add_row(attribute, str(n))
    if not by_attribute:
        faithful.add_row("-", "0")
    console.print(faithful)
    repairs = Table(title="repairs (before a record is filtered)")
    for col in ("stage", "counter", "count"):
        repairs.add_column(col)
    for stage, key, n in repair_counts(m):
        repairs.add_row(stage, key, str(n))
    console.print(repairs)


def _print_rows(rows: list[dict], errors: list[dict]) -> None:
    for r in rows:
        console.rule(f"{r['id']}  [{r['task']}]")
        console.print(f"text: {r['text']}", highlight=False)
        console.print("segments: " + " | ".join(f"{s['modality']}:{s['text']}" for s in r["segments"]),
                      highlight=False)
        if r["voice"]:
            v = r["voice"]
            console.print(f"voice: {v['backend']}:{v['voice_id']} {v['gender']} {v['accent']} "
                          f"rate={v['rate']} pitch={v['pitch']} volume={v['volume']}", highlight=False)
        console.print(f"description: {r['description']}", highlight=False)
        for t in r["targets"]:
            console.print(f"target [{t['task']}/{t['prompt_id']}]: {t['response']}", highlight=False, markup=False)
        p = r.get("provenance")
        if p:
            parts = [f"{p['tts_engine']} seed {p['tts_seed']}, attempt {p['tts_attempt']}"]
            if p["llm_seed"] is not None:
                parts.append(f"LLM seed {p['llm_seed']} temperature {p['llm_temperature']} shots {p['shots']}, "
                             f"attempt {p['llm_attempt']}")
            if p["repaired"]:
                parts.append(f"repaired for {', '.join(p['repaired'])}")
            if p["license"]:
                parts.append(f"licence {p['license']}")
            console.print("provenance: " + "; ".join(parts), highlight=False, markup=False)
    for e in errors:
        console.print(f"[red]error[/red] {e['id']} {e['stage']}/{e['kind']}: {e['message']}", highlight=False)


@app.command()
def report(out: Path = typer.Argument(..., help="A finished build folder.")) -> None:
    """Write OUT/report/report.html with PNG plots (durations, rates, f0, SNR, WER, targets, tasks, reasons,
    shards), balance against the config and target checks; print a one-screen summary."""
    from align_data.report import write_report

    try:
        result = write_report(out)
    except AlignDataError as exc:
        _fail(exc)
    for line in result.summary_lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def validate(out: str = typer.Argument(..., help="A build folder (a path or a URL, e.g. s3://bucket/x).")) -> None:
    """Exit 0 if the build verifies (sha256, schema, audio, ids, counts), else 1 with every reason."""
    from align_data.pipeline.validate import validate_build

    try:
        problems = validate_build(out)
    except AlignDataError as exc:
        _fail(exc)
    if problems:
        for p in problems:
            err.print(f"[red]invalid:[/red] {p}", highlight=False)
        raise typer.Exit(1)
    console.print(f"{out}: valid")


@app.command()
def train(
    shards: Path = typer.Argument(..., help="A build folder (its shards/*.parquet are streamed)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder (adapter.safetensors, optimizer, log)."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Train settings as TOML: TrainConfig fields at the top level or under \\[train], "
        "e.g. adapter = \"qformer\", grad_accum = 4, schedule = \"cosine\", kl_weight = 0.5, "
        "metrics = [\"jsonl\", \"tensorboard\"], task_weights = {continuation = 2, mtbi = 1}. "
        "--steps/--batch-size and then --set override it; --show-config lists every field."),
    steps: Optional[int] = typer.Option(None, min=1, help="Total optimizer steps (default: the config's, else 10)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Examples per micro-batch (an optimizer step takes "
                                             "grad_accum of them) (default: the config's, else 2)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out (model, optimizer, "
                                "RNG and data position), up to --steps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a checkpoint in --out and start over."),
    set_: List[str] = typer.Option([], "--set", help="Override a TrainConfig field: --set lr=5e-4, "
                                   "--set task_weights.mtbi=1 (repeatable)."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved settings, each with its "
                                     "description, and exit without training."),
) -> None:
    """Train the speech adapter (frozen Whisper → conv/GLU or Q-Former adapter → frozen LM) on a build's shards.

    Settings come from the defaults, then --config, then --steps/--batch-size, then --set.
    """
    from align_data.config import apply_overrides
    from align_data.trainer.config import TrainConfig, load_train_config

    try:
        flags = {k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None}
        cfg = load_train_config(config, apply_overrides(flags, list(set_)))
        if show_config:
            for name, field in TrainConfig.model_fields.items():
                value = getattr(cfg, name)
                shown = "(unset)" if value is None else json.dumps(value)
                console.print(f"{name} = {shown}  # {field.description}", highlight=False, soft_wrap=True,
                              markup=False)
            return
        if resume and overwrite:
            raise AlignDataError("--resume and --overwrite contradict each other: choose one")
        from align_data.trainer import train as run_train
        from align_data.trainer.checkpoint import ADAPTER_FILE, LOG_FILE, OPTIMIZER_FILE, STATE_FILE

        if overwrite:
            for name in (ADAPTER_FILE, OPTIMIZER_FILE, STATE_FILE, LOG_FILE):
                (out / name).unlink(missing_ok=True)
        result = run_train(shards, out, cfg, resume=resume)
    except AlignDataError as exc:
        _fail(exc)
    loss, per_step, gpu = result["final_loss"], result["seconds_per_step"], result["peak_gpu_mb"]
    memory = f"{result['peak_rss_mb']:.0f} MiB resident" + ("" if gpu is None else f", {gpu:.0f} MiB on the GPU")
    console.print(f"trained to step {result['steps']}; final loss "
                  f"{'n/a' if loss is None else f'{loss:.4f}'}; "
                  f"{'n/a' if per_step is None else f'{per_step:.2f}'} s/step; peak memory {memory}; adapter in {out}")


@app.command("eval")
def eval_(
    first: Path = typer.Argument(..., help="The checkpoint folder written by `train` (CKPT DIR), or the build "
                                          "folder when --ckpt names the checkpoint."),
    second: Optional[Path] = typer.Argument(None, help="The build folder to evaluate on."),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint folder (the older `eval DIR --ckpt CKPT`)."),
    split: List[str] = typer.Option(["heldout", "heldout_prompt", "heldout_task"], "--split",
                                    help="Rows of these splits, each reported apart (repeatable); 'all' = every row."),
    max_examples: Optional[int] = typer.Option(None, min=1, help="At most this many examples per split."),
    generate: int = typer.Option(8, min=0, help="Examples per split whose responses are generated and compared "
                                                "(0 = losses only)."),
    max_new_tokens: int = typer.Option(32, min=1, help="Greedy decoding budget per response."),
    generate_batch: int = typer.Option(16, "--generate-batch", min=1,
                                       help="Responses decoded together in one left-padded batch (on CPU a decode "
                                            "step of 16 rows costs about as much as one)."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline",
                                  help="Also score untrained adapters (the loss to beat)."),
    baseline_inits: int = typer.Option(3, "--baseline-inits", min=1,
                                       help="Untrained adapters scored (seeds SEED, SEED+1, ...); their mean loss is "
                                            "the baseline, as one random init alone is a noisy yardstick."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads; default: the checkpoint's."),
) -> None:
    """Held-out loss from speech vs transcript, behaviour alignment of generated responses; report beside CKPT."""
    from align_data.trainer.evaluate import evaluate
    from align_data.trainer.report import write_report

    if ckpt is not None and second is not None:
        _fail(AlignDataError("give the checkpoint once: `eval CKPT DIR` or `eval DIR --ckpt CKPT`"))
    if ckpt is None and second is None:
        _fail(AlignDataError("missing the build folder: `align-data eval CKPT DIR`"))
    ckpt_dir, shards = (ckpt, first) if ckpt is not None else (first, second)
    try:
        result = evaluate(shards, ckpt_dir, splits=None if "all" in split else split, max_examples=max_examples,
                          generate=generate, max_new_tokens=max_new_tokens, baseline=baseline,
                          baseline_inits=baseline_inits, threads=threads, generate_batch=generate_batch)
        paths = write_report(result, ckpt_dir)
    except AlignDataError as exc:
        _fail(exc)
    parts = [*result["splits"].items(), ("all", result)]
    losses = Table("split", "n", "speech", "untrained", "drop", "text", "gap closed",
                   title="held-out loss per target token: speech input, untrained adapters (mean), transcript as text")
    similar = Table("split", "n", "BLEU", "chrF", "cosine", title="speech-vs-transcript response similarity")
    for name, part in parts:
        alignment = part.get("alignment", {})
        pair = alignment.get("speech_vs_text", {})
        losses.add_row(name, str(part["examples"]), _num(part.get("speech_loss")),
                       _num(part.get("baseline_speech_loss")), _num(part.get("relative_drop"), pct=True),
                       _num(part.get("text_loss")), _num(part.get("gap_closed"), pct=True))
        similar.add_row(name, str(alignment.get("examples", 0)), _num(pair.get("bleu"), 1),
                        _num(pair.get("chrf"), 1), _num(pair.get("cosine"), 3))
    console.print(losses)
    if any(part.get("alignment", {}).get("examples") for _, part in parts):
        console.print(similar)
    for name, part in parts:
        if part.get("relative_drop") is not None:
            console.print(f"{SPLIT_LABELS.get(name, name)}: speech loss {part['speech_loss']:.4f} vs "
                          f"{part['baseline_speech_loss']:.4f} with untrained adapters, "
                          f"{_change(part['relative_drop'])} (the transcript as text: {_change(part['text_drop'])}) "
                          f"(step {result['step']})")
    console.print(f"report: {paths['report']} (+ {', '.join(p.name for k, p in paths.items() if k != 'report')})")


def _change(drop: float) -> str:
    """A relative loss drop in words: '20.0% lower', or '16.4% higher' when the loss rose."""
    return f"{drop:.1%} lower" if drop >= 0 else f"{-drop:.1%} higher"


# What each split of `eval` holds, for its summary lines.
SPLIT_LABELS = {"heldout": "held-out documents", "heldout_prompt": "held-out MTBI phrasings",
                "heldout_task": "held-out MTBI tasks", "all": "all evaluated rows"}


def _num(value: Optional[float], digits: int = 4, pct: bool = False) -> str:
    """A table cell: the number, or '-' when it was not measured."""
    if value is None:
        return "-"
    return f"{value:.1%}" if pct else f"{value:.{digits}f}"


@app.command()
def export(
    build_dir: Path = typer.Argument(..., help="A finished build folder (the --out of `align-data build`)."),
    format_: str = typer.Option(..., "--format", "-f", help="lhotse | nemo | nemo-legacy | blsp | hf"),
    out: Path = typer.Option(..., "--out", "-o", help="Export folder (outside the build folder)."),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated tasks to export, e.g. continuation,description; "
                                                   "default: every task in the build."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous export in OUT (a rerun with the "
                                                              "same settings resumes without it)."),
    absolute_paths: bool = typer.Option(False, "--absolute-paths", help="nemo/nemo-legacy/blsp: write absolute "
                                                                        "audio paths (default: relative to OUT)."),
    audio_locator_tag: Optional[str] = typer.Option(
        None, "--audio-locator-tag", help="nemo: the placeholder NeMo puts where each clip goes; must equal the SALM "
                                          "model's audio_locator_tag (default: <|audioplaceholder|>, as NeMo's "
                                          "salm.yaml)."),
) -> None:
    """Export a build for another trainer: lhotse Shar, NeMo SALM conversations (or NeMo <= 2.7 manifests), BLSP
    jsonl or an HF datasets folder."""
    from align_data.export import export_corpus

    try:
        summary = export_corpus(build_dir, out, format_, None if tasks is None else tasks.split(","),
                                overwrite=overwrite, absolute_paths=absolute_paths,
                                audio_locator_tag=audio_locator_tag)
    except AlignDataError as exc:
        _fail(exc)
    t = summary.totals
    console.print(f"exported {build_dir} as {summary.format} to {out}: {t.rows_exported} of {t.rows_selected} rows "
                  f"of tasks {','.join(summary.tasks)} as {t.items} items, {t.audio_seconds / 3600:.3f} h audio; "
                  f"shards written {summary.shards_written}, already done {summary.shards_skipped}; "
                  f"{summary.seconds:.1f}s", highlight=False)
    if t.skipped:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(t.skipped.items()))
        err.print(f"[yellow]skipped {sum(t.skipped.values())} rows the format cannot carry[/yellow] ({reasons}); "
                  f"listed in {out / 'skipped.jsonl'}", highlight=False)
    failed = summary.report["source"]["failed_shards"]
    if failed:
        err.print(f"[yellow]the build has {len(failed)} failed shard(s) ({', '.join(failed)}) whose rows are not in "
                  "it[/yellow]; finish it with `align-data build --resume` and export again", highlight=False)


@app.command()
def prepare() -> None:
    """Prepare the embedded models once (Gemma 3 270M and Whisper base as HF folders in the cache, and Gemma as an
    int8 CTranslate2 model for the default LLM backend)."""
    from align_data.models.gemma import prepare_gemma
    from align_data.models.whisper import prepare_whisper

    try:
        console.print(f"gemma: {prepare_gemma()}")
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            pass  # the ctranslate2 backend is not installed: nothing to convert
        else:
            from align_data.models.gemma import prepare_gemma_ct2

            console.print(f"gemma (ctranslate2 int8): {prepare_gemma_ct2('int8')}")
        console.print(f"whisper: {prepare_whisper()}")
    except AlignDataError as exc:
        _fail(exc)


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
