"""TTS per backend: real-time factor, stage throughput vs the raw engine on the same texts, peak RSS.

Each backend runs in its own process (so peak RSS is its own). Prints one line per backend with
    RTF = compute seconds / audio seconds (the engine's child process included), peak RSS of the worker or
    its engine child, whichever is larger, and stage/raw = texts/s of the TTS stage ÷ texts/s of the engine
    (best of --rounds interleaved rounds each).
    .venv/bin/python benchmarks/bench_tts.py [--texts 12] [--coqui-model DIR] [--backends kokoro,hibari]

kokoro runs the embedded Kokoro-82M (int8 ONNX, one thread) with its jm_kumo voice.

coqui runs the model folder given by --coqui-model; without one it builds the tiny random-init VITS of the
tests, whose RTF says nothing about a real model (its stage/raw ratio and the isolation overhead still do).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOICES = {"espeak": ("en-us+f2", "female"), "piper": ("en_US-joe-medium", "male"), "hibari": ("heart", "female"),
          "kokoro": ("jm_kumo", "male"), "coqui": ("*", "unknown")}


def _texts(n: int) -> list[str]:
    lines = [l for l in (ROOT / "examples/demo_corpus.txt").read_text().splitlines() if len(l.split()) > 8]
    return lines[:n]


def run_one(backend: str, n: int, coqui_model: str | None, rounds: int) -> dict:
    from align_data.config import InterleaveConfig, TTSConfig, VoiceSpec
    from align_data.schemas import Record, SourceRef
    from align_data.stages.interleave import InterleaveStage
    from align_data.stages.tts import TTSStage
    from align_data.stages.tts.stage import sample_voice
    from align_data.stages.base import rng_for

    voice_id, gender = VOICES[backend]
    coqui = {}
    if backend == "coqui":
        if coqui_model is None:
            import tempfile

            from align_data.stages.tts.coqui import build_tiny_vits

            coqui_model = str(build_tiny_vits(Path(tempfile.mkdtemp()) / "tiny-vits", speakers=["a", "b"])[0])
        coqui = {"model_path": coqui_model}
    cfg = TTSConfig(voices=[VoiceSpec(backend=backend, id=voice_id, gender=gender, accent="American")],
                    speed_range=(1.0, 1.0), coqui=coqui)
    stage = TTSStage(cfg, seed=0)
    stage.setup()
    texts = _texts(n)
    records = InterleaveStage(InterleaveConfig(task_weights={"continuation": 1.0}), 0)(
        [Record(id=f"b-{i}", shard_id=0, source=SourceRef("b", str(i), 0), text=t) for i, t in enumerate(texts)])
    stage(records[:1])  # warm-up
    engine = stage.engines[backend]
    voices = [sample_voice(cfg, rng_for(0, r.shard_id, r.id, "tts"), stage.pool) for r in records]
    raw_times, stage_times = [], []
    for _ in range(rounds):  # interleaved rounds, best of each: warm-up and drift hit both sides alike
        t0 = time.perf_counter()
        audio_s = 0.0
        for r, voice in zip(records, voices):  # the engine called directly with the same voice settings
            samples, rate = stage._speak(r.text, voice, 0)
            audio_s += samples.size / rate
        raw_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = stage(records)
        stage_times.append(time.perf_counter() - t0)
    raw, staged = min(raw_times), min(stage_times)
    assert all(r.live for r in out), [r.error for r in out if not r.live]
    if hasattr(engine, "close"):  # an isolated engine lives in a child: end it so its peak is counted
        engine.close()
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"backend": backend, "texts": len(texts), "audio_s": audio_s, "raw_s": raw, "stage_s": staged,
            "rtf": raw / audio_s, "stage_over_raw": raw / staged,
            "peak_rss_mb": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved raw/stage rounds; the best of each counts")
    parser.add_argument("--coqui-model", help="a coqui model folder or checkpoint (default: the tiny test VITS)")
    parser.add_argument("--backends", default=",".join(VOICES), help="comma-separated backends to run")
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        print(json.dumps(run_one(args.backend, args.texts, args.coqui_model, args.rounds)))
        return
    for backend in args.backends.split(","):
        extra = ["--coqui-model", args.coqui_model] if args.coqui_model else []
        proc = subprocess.run([sys.executable, __file__, "--backend", backend, "--texts", str(args.texts),
                               "--rounds", str(args.rounds), *extra],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{backend:7s}: skipped ({proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'})")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{backend:7s}: {r['texts']} texts, {r['audio_s']:.1f}s audio, RTF {r['rtf']:.3f}, "
              f"stage/raw throughput {r['stage_over_raw']:.2f}, peak RSS {r['peak_rss_mb']:.0f} MB"
              + (" (tiny random VITS: RTF not meaningful)" if backend == "coqui" and not args.coqui_model else ""))


if __name__ == "__main__":
    main()
