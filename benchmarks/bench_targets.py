"""Targets backends on CPU, same model and prompts in one run: batched vs one prompt at a time (tokens/s), and for
transformers the shared few-shot prefix cached vs full prompts.

Prints seconds, generated tokens/s, the ratios and whether the answers are identical (greedy).
    .venv/bin/python benchmarks/bench_targets.py [--prompts 64] [--batch-size 16] [--max-new-tokens 32]
    .venv-vllm/bin/python benchmarks/bench_targets.py --backend vllm     # in the venv of `make test-vllm`
    .venv/bin/python benchmarks/bench_targets.py --prefix-cache [--rows 16]
    .venv/bin/python benchmarks/bench_targets.py --engines [--prompts 48] [--threads 1]
    .venv/bin/python benchmarks/bench_targets.py --steps [--threads 1]

--engines: the CPU backends side by side on the same prompts, drawn like a build's (few-shot examples per record;
continuation, description and MTBI; lengths spread like a build's): transformers fp32 (the baseline) and ctranslate2
int8 in length-sorted groups of 4 (before) and in cost-planned groups, in calls of --batch-size, and cost-planned
over every prompt in one call (llm.batch_shards: several shards' prompts at once), greedy; prints seconds, tokens/s,
prompts/s, the ratio to the baseline and how many answers are identical to it.
--steps: what ctranslate2_client.plan_groups assumes: prefill per token, decode step by group size, and a short
prompt fed token by token behind a longer one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from align_data.config import LLMConfig
from align_data.schemas import Record, SourceRef
from align_data.stages.targets.client import Completion, Prompt, Sampling, make_client
from align_data.stages.targets.prompts import build_request

SENTENCES = [
    "The kettle took forever to boil on the old stove.", "Our team lost the final by a single goal.",
    "Scientists found water ice in a crater near the south pole.", "The train to the coast was delayed by snow.",
    "She laughed so hard that she nearly dropped her coffee.", "My grandmother baked bread every Sunday morning.",
    "The museum opens late on Thursdays during the summer.", "He planted tomatoes along the sunny side of the fence.",
]


def _records(n: int, task: str) -> list[Record]:
    out = []
    for i in range(n):
        text = f"{SENTENCES[i % len(SENTENCES)]} It was day {i}."
        seed = f'[00:00:00 - 00:00:03]: "{text}" (Gender: Female, Accent: British, Pitch: normal, Duration: 3s)'
        out.append(Record(id=f"b-{i}", shard_id=0, source=SourceRef("b", str(i), 0), text=text, task=task,
                          description=seed))
    return out


def prompts(n: int, task: str = "continuation") -> list[Prompt]:
    requests = [build_request(r, np.random.default_rng(0)) for r in _records(n, task)]
    return [Prompt(r.llm_prompt, r.chat) for r in requests]


def batching(args: argparse.Namespace) -> None:
    """Batches of --batch-size prompts vs one prompt per call, through the backend's LLMClient (no cache)."""
    config = LLMConfig(backend=args.backend, cache=False, max_new_tokens=args.max_new_tokens,
                       batch_size=args.batch_size, threads=args.threads,
                       **({"kv_cache_gb": 1, "enforce_eager": args.eager, "max_model_len": 1024}
                          if args.backend == "vllm" else {}))
    t0 = time.perf_counter()
    client = make_client(config, None).inner
    print(f"{args.backend}: model loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    batch = prompts(args.prompts)
    sampling = Sampling.from_config(config, chat=client.chat)
    seeds = list(range(len(batch)))
    client.complete(batch[:2], sampling, seeds[:2])  # warm-up
    results = {}
    for size in (1, args.batch_size):
        t0 = time.perf_counter()
        answers = []
        for start in range(0, len(batch), size):
            answers += client.complete(batch[start:start + size], sampling, seeds[start:start + size])
        seconds = time.perf_counter() - t0
        tokens = sum(a.tokens_out for a in answers if isinstance(a, Completion))
        results[size] = (seconds, tokens, [a.text if isinstance(a, Completion) else None for a in answers])
        print(f"batch {size:3d}: {len(answers)} prompts, {tokens} tokens in {seconds:6.1f}s = "
              f"{tokens / seconds:6.1f} tokens/s", flush=True)
    one, many = results[1], results[args.batch_size]
    same = sum(a == b for a, b in zip(one[2], many[2], strict=True))
    print(f"{args.backend}, {args.prompts} prompts: batch {args.batch_size} vs 1 = "
          f"{(many[1] / many[0]) / (one[1] / one[0]):.2f}x tokens/s; identical answers: {same}/{len(batch)}")


def build_like_prompts(n: int) -> list[Prompt]:
    """Thirds of continuation, description and MTBI, texts of one to three sentences, each record with its own draw
    of few-shot examples: prompt lengths spread as in a build (about 140 to 470 tokens)."""
    records = []
    for i in range(n):
        task = ("continuation", "description", "mtbi")[i % 3]
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 3))
        seed = f'[00:00:00 - 00:00:0{3 + i % 3}]: "{text}" (Gender: Female, Accent: British, Pitch: normal)'
        records.append(Record(id=f"b-{i}", shard_id=0, source=SourceRef("b", str(i), 0), text=text, task=task,
                              description=seed))
    return [Prompt(r.llm_prompt, r.chat) for r in (build_request(rec, np.random.default_rng(1000 + i))
                                                   for i, rec in enumerate(records))]


def fixed_groups(lengths, decode_steps, max_group, keys=()):  # noqa: ANN001, ARG001 -- plan_groups' signature
    """The grouping before planned groups: length-sorted runs of 4, whatever their spread."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[k:k + 4] for k in range(0, len(order), 4)]


def engines(args: argparse.Namespace) -> None:
    """transformers fp32 against ctranslate2 int8 (length-sorted groups of 4, as before, and cost-planned groups)
    on the same build-like prompts, in calls of --batch-size (about one demo shard's first prompts), and int8 planned
    over all the prompts in one call (what llm.batch_shards gives a worker: several shards' prompts at once)."""
    from align_data.stages.targets import ctranslate2_client

    batch = build_like_prompts(args.prompts)
    sampling = Sampling(args.max_new_tokens, 0.0, 1.0)
    seeds = list(range(len(batch)))
    runs = {}
    planned = ctranslate2_client.plan_groups
    default_group = ctranslate2_client.CTranslate2Client.max_group
    for name, backend, plan, call, group in (
            ("transformers fp32", "transformers", None, args.batch_size, None),
            ("ctranslate2 int8, groups of 4", "ctranslate2", fixed_groups, args.batch_size, None),
            ("ctranslate2 int8, planned groups", "ctranslate2", planned, args.batch_size, None),
            ("ctranslate2 int8, planned, one call", "ctranslate2", planned, len(batch), None),
            (f"ctranslate2 int8, planned, one call, groups <= {args.max_group}", "ctranslate2", planned, len(batch),
             args.max_group)):
        if group == default_group:
            continue
        ctranslate2_client.plan_groups = plan or planned
        client = make_client(LLMConfig(backend=backend, cache=False, threads=args.threads), None).inner
        if group is not None:
            client.max_group = group
        if backend == "ctranslate2":
            lengths = sorted(len(client.tokenizer(p.text)["input_ids"]) for p in batch)
            print(f"prompt tokens: {lengths[0]}..{lengths[-1]}, median {lengths[len(lengths) // 2]}", flush=True)
        client.complete(batch[:2], sampling, seeds[:2])  # warm-up
        t0 = time.perf_counter()
        answers = []
        for start in range(0, len(batch), call):
            stop = start + call
            answers += client.complete(batch[start:stop], sampling, seeds[start:stop])
        seconds = time.perf_counter() - t0
        tokens = sum(a.tokens_out for a in answers)
        runs[name] = (seconds, tokens, [a.text for a in answers])
        print(f"{name:50s}: {len(batch)} prompts, {tokens} tokens in {seconds:6.1f}s = {tokens / seconds:6.1f} "
              f"tokens/s, {len(batch) / seconds:.2f} prompts/s", flush=True)
        del client
    ctranslate2_client.plan_groups = planned
    base = runs["transformers fp32"]
    for name, run in list(runs.items())[1:]:
        same = sum(a == b for a, b in zip(base[2], run[2], strict=True))
        print(f"{name} vs transformers fp32: {base[0] / run[0]:.2f}x prompts/s; identical answers: "
              f"{same}/{len(batch)}")


def steps(args: argparse.Namespace) -> None:
    """ctranslate2 int8: seconds of a prompt's prefill and of one decode step by group size, and of a short prompt
    fed token by token behind a longer one (the constants of ctranslate2_client.plan_groups)."""
    from align_data.stages.targets.ctranslate2_client import CTranslate2Client

    client = CTranslate2Client("embedded", threads=args.threads or 1)
    texts = [p.text for p in prompts(8, "continuation")]
    tokens = [client.tokenizer.convert_ids_to_tokens(client.tokenizer(t)["input_ids"]) for t in texts]
    run = dict(sampling_topk=1, include_prompt_in_result=False, end_token=[])
    client.generator.generate_batch(tokens[:1], max_length=2, **run)  # warm-up
    print(f"prompt tokens: {[len(t) for t in tokens]}")
    for size in (1, 2, 4, 8):
        seconds = {}
        for length in (1, 33):
            t0 = time.perf_counter()
            client.generator.generate_batch(tokens[:size], max_length=length, min_length=length, **run)
            seconds[length] = time.perf_counter() - t0
        print(f"group of {size}: prefill {seconds[1]:.3f}s ({seconds[1] / size / len(tokens[0]) * 1000:.2f} ms a "
              f"token), decode step {(seconds[33] - seconds[1]) / 32 * 1000:.1f} ms", flush=True)
    short = tokens[1][:len(tokens[1]) - 40]
    for group in ([tokens[1], tokens[2]], [short, tokens[1]]):
        t0 = time.perf_counter()
        client.generator.generate_batch(group, max_length=1, **run)
        print(f"lengths {[len(t) for t in group]}: {time.perf_counter() - t0:.2f}s")


def prefix_cache(args: argparse.Namespace) -> None:
    """transformers: the few-shot prefix run once and its KV cache reused, vs every prompt in full."""
    from align_data.stages.targets.transformers_client import TransformersClient

    client = TransformersClient("embedded", args.threads)
    for task in ("continuation", "description"):
        texts = [p.text for p in prompts(args.rows, task)]
        client.generate(texts[:2], 2, 0.0, 1.0, 0)  # warm-up (also fills the prefix cache)
        timings, answers = {}, {}
        for mode in (False, True):
            client.prefix_cache = mode
            t0 = time.perf_counter()
            answers[mode] = client.generate(texts, args.max_new_tokens, 0.0, 1.0, 0)
            timings[mode] = time.perf_counter() - t0
        print(f"{task:12s}: full prompts {timings[False]:6.1f}s ({args.rows / timings[False]:.2f} rows/s), "
              f"prefix cached {timings[True]:6.1f}s ({args.rows / timings[True]:.2f} rows/s), "
              f"speed-up {timings[False] / timings[True]:.2f}x, identical answers: {answers[False] == answers[True]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("transformers", "ctranslate2", "vllm"), default="transformers")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch or ctranslate2 threads (1: as a demo worker)")
    parser.add_argument("--eager", action="store_true", help="vllm: no compile step (starts faster, decodes slower)")
    parser.add_argument("--prefix-cache", action="store_true", help="measure the transformers prefix cache instead")
    parser.add_argument("--rows", type=int, default=16, help="--prefix-cache: rows per task")
    parser.add_argument("--engines", action="store_true", help="transformers fp32 vs ctranslate2 int8 instead")
    parser.add_argument("--max-group", type=int, default=16, help="--engines: also int8 in one call with generate "
                        "calls of up to this many prompts (the client's default: 8)")
    parser.add_argument("--steps", action="store_true", help="ctranslate2 prefill and decode-step costs instead")
    args = parser.parse_args()
    if args.steps:
        steps(args)
    elif args.engines:
        engines(args)
    else:
        prefix_cache(args) if args.prefix_cache else batching(args)


if __name__ == "__main__":
    main()
