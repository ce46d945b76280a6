"""Targets stage on CPU: generation with the shared few-shot prefix cached vs full prompts, same rows.

Prints seconds, rows/s, the speed-up ratio and whether the answers are identical.
    .venv/bin/python benchmarks/bench_targets.py [--rows 16] [--max-new-tokens 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from align_data.schemas import Record, SourceRef
from align_data.stages.targets.prompts import build_request
from align_data.stages.targets.transformers_client import TransformersClient

SENTENCES = [
    "The kettle took forever to boil on the old stove.", "Our team lost the final by a single goal.",
    "Scientists found water ice in a crater near the south pole.", "The train to the coast was delayed by snow.",
    "She laughed so hard that she nearly dropped her coffee.", "My grandmother baked bread every Sunday morning.",
    "The museum opens late on Thursdays during the summer.", "He planted tomatoes along the sunny side of the fence.",
]


def _records(n: int, task: str) -> list[Record]:
    out = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        seed = f'[00:00:00 - 00:00:03]: "{text}" (Gender: Female, Accent: British, Pitch: normal, Duration: 3s)'
        out.append(Record(id=f"b-{i}", shard_id=0, source=SourceRef("b", str(i), 0), text=text, task=task,
                          description=seed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()
    client = TransformersClient("embedded")
    for task in ("continuation", "description"):
        prompts = [build_request(r, np.random.default_rng(0)).llm_prompt for r in _records(args.rows, task)]
        client.generate(prompts[:2], 2, 0.0, 1.0, 0)  # warm-up (also fills the prefix cache)
        timings, answers = {}, {}
        for mode in (False, True):
            client.prefix_cache = mode
            t0 = time.perf_counter()
            answers[mode] = client.generate(prompts, args.max_new_tokens, 0.0, 1.0, 0)
            timings[mode] = time.perf_counter() - t0
        print(f"{task:12s}: full prompts {timings[False]:6.1f}s ({args.rows / timings[False]:.2f} rows/s), "
              f"prefix cached {timings[True]:6.1f}s ({args.rows / timings[True]:.2f} rows/s), "
              f"speed-up {timings[False] / timings[True]:.2f}x, identical answers: {answers[False] == answers[True]}")


if __name__ == "__main__":
    main()
