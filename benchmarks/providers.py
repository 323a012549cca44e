"""Model providers: generation speed, and concurrent ``llm.sample``.

(a) tokens/s of ``local`` (SmolLM2-135M in-process through llama-cpp-python)
(b) tokens/s of ``openai:`` through the real openai client against
    ``python -m llama_cpp.server`` serving the same GGUF on 127.0.0.1
(c) wall time of ``llm.sample(prompt, n=8)`` with concurrent requests vs one
    after another, against a loopback server that answers each request after
    a fixed 200 ms (a one-slot llama.cpp server serialises requests, so it
    cannot show concurrency)

tokens/s = completion tokens / seconds of the request, per prompt, median over
prompts and repeats; temperature 0, so every repeat generates the same tokens.

    python benchmarks/providers.py [--repeats 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the loopback servers

from servers import FaultServer, LlamaServer  # noqa: E402

from pytest_llmmetrics.llm import LLM  # noqa: E402
from pytest_llmmetrics.markers import LLMSettings  # noqa: E402
from pytest_llmmetrics.providers.local import LocalModel, default_threads, gguf_path  # noqa: E402
from pytest_llmmetrics.providers.openai import OpenAIModel  # noqa: E402
from pytest_llmmetrics.providers.spec import ProviderOptions  # noqa: E402

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
PROMPTS = [
    "Write a short story about a dragon who runs a tea shop.",
    "Explain how a refund policy works for an online shop, step by step.",
    "Describe the city of Paris for a visitor who has one day there.",
]


def tokens_per_s(model, repeats: int, max_tokens: int) -> tuple[float, int]:
    rates, tokens = [], 0
    model([SYSTEM, {"role": "user", "content": "Hi"}], temperature=0.0, max_tokens=8)  # warm up / load
    for _ in range(repeats):
        for prompt in PROMPTS:
            reply = model([SYSTEM, {"role": "user", "content": prompt}], temperature=0.0, max_tokens=max_tokens)
            rates.append(reply.completion_tokens / reply.latency_s)
            tokens += reply.completion_tokens
    return statistics.median(rates), tokens


def sample_wall(base_url: str, concurrency: int, n: int, repeats: int) -> float:
    model = OpenAIModel("m", ProviderOptions(base_url=base_url, concurrency=concurrency))
    llm = LLM(model, LLMSettings(model="openai:m", seed=0))
    llm("warm up")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        replies = llm.sample("Name a colour.", n=n, temperature=0.9)
        times.append(time.perf_counter() - start)
        assert len(replies) == n
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()

    start = time.perf_counter()
    local = LocalModel()
    local([SYSTEM, {"role": "user", "content": "Hi"}], temperature=0.0, max_tokens=1)
    print(f"local: first call (import llama_cpp + load {gguf_path().name}) {time.perf_counter() - start:.2f} s")
    rate, tokens = tokens_per_s(local, args.repeats, args.max_tokens)
    print(f"threads: {default_threads()} for both")
    print(f"(a) local:                 {rate:6.1f} tokens/s (median; {tokens} tokens generated)")

    with tempfile.TemporaryDirectory() as tmp:
        # The same threads as the local model (the server's own default is half the cores).
        server = LlamaServer(gguf_path(), Path(tmp) / "server.log", n_threads=default_threads())
        try:
            server.wait_ready()
            remote = OpenAIModel("smollm2", ProviderOptions(base_url=server.base_url))
            rate_remote, tokens = tokens_per_s(remote, args.repeats, args.max_tokens)
        finally:
            server.stop()
    print(f"(b) openai: llama.cpp srv: {rate_remote:6.1f} tokens/s (median; {tokens} tokens generated)"
          f" = {rate_remote / rate:.2f} x local")

    n = 8
    with FaultServer(default=("delay", 0.2, "Blue.")) as server:
        concurrent = sample_wall(server.base_url, concurrency=8, n=n, repeats=args.repeats)
        sequential = sample_wall(server.base_url, concurrency=1, n=n, repeats=args.repeats)
    print(f"(c) llm.sample(n={n}), 200 ms server: concurrent {concurrent:.3f} s, sequential {sequential:.3f} s, "
          f"ratio {concurrent / sequential:.3f} (ideal {1 / n:.3f})")


if __name__ == "__main__":
    main()
