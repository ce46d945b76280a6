"""The GPU proof's figures: per-stage rates from a build's shard sidecars, and the summary as text lines."""

from __future__ import annotations

LABEL = "random weights (speed does not depend on weight values)"
CPU_LABEL = "tiny random-init models on the CPU: a check of the path, not a speed figure"
GPU_STAGES = ("quality", "targets")  # the stages that run on the GPU when torch sees one
# docs/capacity.md: the demo mix asks ~16k output tokens of the LLM per hour of speech (real weights, CPU build); its
# r_llm = output tokens/s × 3600 / that. Random answers run to max_new_tokens, so the stage's own rate is lower.
OUTPUT_TOKENS_PER_SPEECH_HOUR = 16_000


# the build's stages in pipeline order (sidecars keep their seconds sorted by name)
PIPELINE = ("source", "interleave", "tts", "acoustics", "paralinguistics", "quality", "targets", "target_checks")


def stage_rates(sidecars: list[dict], gpu: bool, tts_on_gpu: bool = False) -> dict:
    """Per stage, from the shard sidecars: worker-seconds and hours of speech per hour of that stage's worker, over
    every shard and over the shards after the first (whose seconds hold the lazy model loads and the warm-ups);
    plus the LLM's prompts and tokens per second."""
    sidecars = sorted(sidecars, key=lambda s: s["shard_id"])
    steady = sidecars[1:]
    audio_all = sum(s["audio_seconds"] for s in sidecars)
    audio_steady = sum(s["audio_seconds"] for s in steady)
    seen = {name for s in sidecars for name in s["seconds"]}
    names = [n for n in PIPELINE if n in seen] + sorted(seen - set(PIPELINE))
    stages = {}
    for name in names:
        seconds = sum(s["seconds"].get(name, 0.0) for s in sidecars)
        steady_seconds = sum(s["seconds"].get(name, 0.0) for s in steady)
        on_gpu = gpu and (name in GPU_STAGES or (name == "tts" and tts_on_gpu))
        stages[name] = {
            "device": "GPU" if on_gpu else "CPU", "seconds": round(seconds, 3),
            "unit": "hours of speech per GPU-hour" if on_gpu else "hours of speech per worker-hour (one CPU process)",
            "speech_h_per_h": round(audio_all / seconds, 2) if seconds else None,
            "steady_seconds": round(steady_seconds, 3),
            "steady_speech_h_per_h": round(audio_steady / steady_seconds, 2) if steady_seconds else None}
    usage: dict[str, int] = {}
    for s in sidecars:
        for key, n in s["stages"].get("targets", {}).get("usage", {}).items():
            usage[key] = usage.get(key, 0) + n
    llm_seconds = stages.get("targets", {}).get("seconds") or 0.0
    llm = {key: usage.get(key, 0) for key in ("calls", "tokens_in", "tokens_out")}
    if llm_seconds:
        out_per_s = llm["tokens_out"] / llm_seconds
        llm.update(prompts_per_s=round(llm["calls"] / llm_seconds, 2), tokens_out_per_s=round(out_per_s, 1),
                   tokens_in_per_s=round(llm["tokens_in"] / llm_seconds, 1),
                   formula_speech_h_per_h=round(out_per_s * 3600 / OUTPUT_TOKENS_PER_SPEECH_HOUR, 2))
    return {"shards": len(sidecars), "rows": sum(s["rows"] for s in sidecars),
            "audio_hours": round(audio_all / 3600, 4), "stages": stages, "llm": llm}


def print_summary(summary: dict) -> None:
    """The figures, one line each, every speed figure labelled."""
    env, label = summary["machine"], summary["label"]
    print(f"\n== GPU proof ({summary['mode']}) on {env.get('gpu', 'no GPU')}, torch {env['torch']}, "
          f"{env['cpu_count']} CPUs; {summary['wall_s']:.0f} s; every speed figure: {label}")
    print(f"voices: {', '.join(summary['voices']) or '-'}; kokoro: {summary['kokoro'].get('why', '-')}")
    build = summary.get("build") or {}
    if "stages" in build:
        print(f"build: {build['rows']} rows, {build['audio_hours']:.3f} h of speech, {build['shards']} shards, "
              f"{build['wall_s']:.0f} s wall{' (stopped at its time limit)' if build['stopped_at_limit'] else ''}; "
              "rates over the shards after the first:")
        for name, s in build["stages"].items():
            rate = s["steady_speech_h_per_h"] if s["steady_speech_h_per_h"] is not None else s["speech_h_per_h"]
            print(f"  {name:16s} {s['device']}  {s['seconds']:8.2f} s  {rate if rate is not None else '-':>9} "
                  f"{s['unit']}  [{label}]")
        llm = build["llm"]
        if "tokens_out_per_s" in llm:
            print(f"  LLM ({', '.join(llm.get('target_models', []))}): {llm['calls']} prompts, "
                  f"{llm['prompts_per_s']} prompts/s, {llm['tokens_out_per_s']} output tokens/s, "
                  f"{llm['tokens_in_per_s']} prompt tokens/s; capacity formula r_llm at the demo's "
                  f"~16k output tokens per hour of speech: {llm['formula_speech_h_per_h']} h of speech per hour  "
                  f"[{label}; answers run to max_new_tokens]")
    train = summary.get("train")
    if train:
        memory = "-" if train["peak_gpu_mib"] is None else f"{train['peak_gpu_mib']:.0f} MiB"
        print(f"train: {train['steps']} steps ({train['device']}, frozen models {train['frozen_dtype']}, batch "
              f"{train['batch_size']}): {train['s_per_step']:.4f} s/step, {train['examples_per_s']:.1f} examples/s, "
              f"{train['tokens_per_s']:.0f} target tokens/s, peak GPU memory {memory}  [{label}]")
    for name, error in summary["errors"].items():
        print(f"error in {name}: {error.splitlines()[0]}")
