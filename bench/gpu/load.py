"""Closed-loop load on a vLLM OpenAI server: streaming completions of fixed input and output length.

Prompts are random token ids (exactly ``input_tokens`` long, different for every request, so the prefix
cache gets no hits); ``ignore_eos`` with ``min_tokens`` = ``max_tokens`` makes every request decode
``output_tokens``. ``concurrency`` requests are in flight at all times. Server-side defaults from the
operator's generation config (repetition penalty, temperature) apply, as they would for a user.

Reported per level: output and total tokens/s, requests/s, TTFT, time per output token (TPOT, from each
request's own decode time) and inter-chunk latency (ITL; one chunk per token unless --stream-interval).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class _Samples:
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    output_tokens: int = 0
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 2)


async def _one(
    session: aiohttp.ClientSession, url: str, model: str, prompt: list[int], output_tokens: int, out: _Samples
) -> None:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": output_tokens,
        "min_tokens": output_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    last = started
    tokens = 0
    gaps: list[float] = []
    async with session.post(url, json=body) as response:
        if response.status != 200:
            out.errors.append(f"{response.status} {(await response.text())[:200]}")
            return
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices"):
                now = time.perf_counter()
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
    end = time.perf_counter()
    if first is None:
        out.errors.append("no tokens streamed")
        return
    out.ttft.append(first - started)
    out.latency.append(end - started)
    out.itl.extend(gaps)
    out.output_tokens += tokens
    if tokens > 1:
        out.tpot.append((last - first) / (tokens - 1))


async def run_level(
    base_url: str,
    model: str,
    concurrency: int,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    vocab_size: int,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    # Ids from 11: the tiny tokenizer's special tokens are 0..10; the rest decode to text.
    prompts = [[rng.randrange(11, vocab_size) for _ in range(input_tokens)] for _ in range(requests)]
    samples = _Samples()
    gate = asyncio.Semaphore(concurrency)
    url = f"{base_url}/v1/completions"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=900)
    ) as session:
        # Warm-up at this concurrency (CUDA graphs for the batch size, sampler paths); not counted.
        warm = _Samples()
        await asyncio.gather(
            *(_one(session, url, model, p[:64], 4, warm) for p in prompts[: min(concurrency, 32)])
        )

        async def gated(prompt: list[int]) -> None:
            async with gate:
                await _one(session, url, model, prompt, output_tokens, samples)

        started = time.perf_counter()
        await asyncio.gather(*(gated(p) for p in prompts))
        wall = time.perf_counter() - started
    done = len(samples.latency)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "completed": done,
        "errors": len(samples.errors) + len(warm.errors),
        "first_error": next(iter(samples.errors or warm.errors), None),
        "wall_s": round(wall, 3),
        "requests_per_s": round(done / wall, 3),
        "output_tokens_per_s": round(samples.output_tokens / wall, 1),
        "total_tokens_per_s": round((samples.output_tokens + done * input_tokens) / wall, 1),
        "ttft_ms": {
            "p50": _ms(percentile(samples.ttft, 0.5)),
            "p90": _ms(percentile(samples.ttft, 0.9)),
            "p99": _ms(percentile(samples.ttft, 0.99)),
        },
        "tpot_ms": {
            "p50": _ms(percentile(samples.tpot, 0.5)),
            "p90": _ms(percentile(samples.tpot, 0.9)),
            "p99": _ms(percentile(samples.tpot, 0.99)),
        },
        "itl_ms": {"p50": _ms(percentile(samples.itl, 0.5)), "p99": _ms(percentile(samples.itl, 0.99))},
        "latency_s_p50": None if not samples.latency else round(statistics.median(samples.latency), 3),
    }
