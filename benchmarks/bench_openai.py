"""openai backend: generated tokens/s with 8 requests in flight vs 1, same server, same prompts, one run.

The server is, by default, llama-cpp-python's server on the embedded Gemma 3 270M GGUF, started here
(needs the `llamacpp` extra); --vllm-serve starts `vllm serve` on the prepared HF folder instead (in the venv of
`make test-vllm`); --base-url/--model use any running OpenAI-compatible server; --stub-latency S uses the fault stub answering every request after S seconds (no model: it
measures only how well the client overlaps requests). The response cache is off. Prints tokens/s for each
concurrency (the fastest of --rounds), the ratio, and whether both gave identical answers (greedy).

    .venv/bin/python benchmarks/bench_openai.py [--prompts 64] [--max-new-tokens 32] [--concurrency 8] [--rounds 1]
    .venv-vllm/bin/python benchmarks/bench_openai.py --vllm-serve
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* helpers

from align_data.config import LLMConfig  # noqa: E402
from align_data.schemas import Record, SourceRef  # noqa: E402
from align_data.stages.targets.client import Completion, Prompt, Sampling  # noqa: E402
from align_data.stages.targets.openai_client import OpenAIClient  # noqa: E402
from align_data.stages.targets.prompts import build_request  # noqa: E402

SENTENCES = [
    "The kettle took forever to boil on the old stove.", "Our team lost the final by a single goal.",
    "Scientists found water ice in a crater near the south pole.", "The train to the coast was delayed by snow.",
    "She laughed so hard that she nearly dropped her coffee.", "My grandmother baked bread every Sunday morning.",
    "The museum opens late on Thursdays during the summer.", "He planted tomatoes along the sunny side of the fence.",
]


def prompts(n: int) -> list[Prompt]:
    out = []
    for i in range(n):
        text = f"{SENTENCES[i % len(SENTENCES)]} It was day {i}."
        record = Record(id=f"b-{i}", shard_id=0, source=SourceRef("b", str(i), 0), text=text, task="continuation")
        out.append(Prompt(build_request(record, np.random.default_rng(0)).llm_prompt))
    return out


def run(url: str, model: str, concurrency: int, batch: list[Prompt], sampling: Sampling) -> tuple[float, list]:
    client = OpenAIClient(LLMConfig(backend="openai", model=model, base_url=url, concurrency=concurrency,
                                    cache=False, timeout_s=600))
    try:
        t0 = time.perf_counter()
        answers = client.complete(batch, sampling, list(range(len(batch))))
        return time.perf_counter() - t0, answers
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--base-url", help="a running OpenAI-compatible server (…/v1)")
    parser.add_argument("--model", default="gemma-3-270m", help="the model name that server serves")
    parser.add_argument("--stub-latency", type=float, help="use the stub with this per-request latency (s)")
    parser.add_argument("--vllm-serve", action="store_true", help="start `vllm serve` on the prepared Gemma folder")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (started server only)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate 1, N, 1, N, ...; keep each one's fastest "
                                                              "(on a shared machine load drifts during a run)")
    args = parser.parse_args()

    if args.base_url:
        server, name = contextlib.nullcontext(args.base_url), f"server at {args.base_url}"
    elif args.vllm_serve:
        from align_data.models.gemma import prepare_gemma
        from tests.stages.vllm_server import vllm_server

        server, name = vllm_server(prepare_gemma(), eager=False), "vllm serve (CPU build), Gemma 3 270M HF folder"
    elif args.stub_latency is not None:
        from tests.fakes.openai_server import FakeOpenAIServer

        stub = FakeOpenAIServer(default="slow", delay_s=args.stub_latency)
        server, name = contextlib.nullcontext(stub.url), f"stub, {args.stub_latency}s per request (no model)"
        stub.__enter__()
    else:
        from tests.stages import llama_server

        if not llama_server.available():
            sys.exit("llama-cpp-python[server] is not installed: pip install -e '.[llamacpp]', or pass --base-url")
        server, name = llama_server.llama_cpp_server(threads=args.threads), \
            f"llama_cpp.server, Gemma 3 270M Q4_K_M, {args.threads} threads"
    batch = prompts(args.prompts)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0)
    with server as url:
        run(url, args.model, 2, batch[:2], sampling)  # warm-up (model pages, prompt cache)
        results: dict[int, tuple[float, list]] = {}
        for _ in range(args.rounds):
            for c in (1, args.concurrency):
                seconds, answers = run(url, args.model, c, batch, sampling)
                if c not in results or seconds < results[c][0]:
                    results[c] = (seconds, answers)
    rates = {}
    for c, (seconds, answers) in results.items():
        done = [a for a in answers if isinstance(a, Completion)]
        tokens = sum(a.tokens_out for a in done)
        rates[c] = tokens / seconds
        print(f"concurrency {c:2d}: {len(done)}/{len(answers)} answered, {tokens} tokens in {seconds:6.1f}s = "
              f"{rates[c]:7.1f} tokens/s ({len(done) / seconds:.2f} requests/s)")
    texts = [[a.text if isinstance(a, Completion) else None for a in r[1]] for r in results.values()]
    print(f"{name}: concurrency {args.concurrency} vs 1 = {rates[args.concurrency] / rates[1]:.2f}x tokens/s; "
          f"identical answers: {texts[0] == texts[1]}")


if __name__ == "__main__":
    main()
