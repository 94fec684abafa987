"""Requests a user makes: /health, /v1/models, the guide's client call, a tool call, long prompts."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from typing import Any

GUIDE_MESSAGES = [{"role": "user", "content": "Tell me something about large language models."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, str]:
    """(status, body text); status 0 when the server could not be reached."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def health(base_url: str) -> int:
    return http("GET", f"{base_url}/health", timeout=5)[0]


def models(base_url: str) -> dict[str, Any]:
    status, text = http("GET", f"{base_url}/v1/models")
    ids = [m["id"] for m in json.loads(text)["data"]] if status == 200 else []
    return {"status": status, "ids": ids}


def guide_chat(base_url: str, model: str) -> dict[str, Any]:
    """The quickstart's call, verbatim but for the base URL and model name (docs/quickstart.md)."""
    from openai import OpenAI

    client = OpenAI(api_key="EMPTY", base_url=f"{base_url}/v1")
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=GUIDE_MESSAGES,  # type: ignore[arg-type]
        temperature=0.0,
        max_tokens=512,
        extra_body={
            "repetition_penalty": 1.05,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        },
    )
    response = raw.parse()
    choice = response.choices[0]
    return {
        "status": raw.http_response.status_code,
        "seconds": round(time.perf_counter() - started, 3),
        "finish_reason": choice.finish_reason,
        "prompt_tokens": response.usage.prompt_tokens if response.usage else None,
        "completion_tokens": response.usage.completion_tokens if response.usage else None,
        "content_head": (choice.message.content or "")[:80],
    }


def tool_call(base_url: str, model: str) -> dict[str, Any]:
    """A tools request through the rendered tool-call parser (noise weights make no real call)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Beijing?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "max_tokens": 32,
    }
    started = time.perf_counter()
    status, text = http("POST", f"{base_url}/v1/chat/completions", body, timeout=120)
    out: dict[str, Any] = {"status": status, "seconds": round(time.perf_counter() - started, 3)}
    if status == 200:
        out["finish_reason"] = json.loads(text)["choices"][0]["finish_reason"]
    else:
        out["error"] = text[:300]
    return out


def long_prompt(base_url: str, model: str, tokens: int, vocab_size: int, seed: int = 1) -> dict[str, Any]:
    """One prompt of exactly ``tokens`` token ids, 8 tokens out; then whether /health still answers 200."""
    rng = random.Random(seed)
    body = {
        "model": model,
        "prompt": [rng.randrange(11, vocab_size) for _ in range(tokens)],
        "max_tokens": 8,
        "ignore_eos": True,
    }
    started = time.perf_counter()
    status, text = http("POST", f"{base_url}/v1/completions", body, timeout=300)
    out: dict[str, Any] = {
        "prompt_tokens": tokens,
        "status": status,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if status == 200:
        out["usage"] = json.loads(text).get("usage")
    else:
        out["error"] = text[:300]
    time.sleep(1.0)  # a dying engine takes a moment to flip /health
    out["health_after"] = health(base_url)
    return out
