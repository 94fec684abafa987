"""Read vLLM's start-up log: stage times (from when each line arrived) and vLLM's own figures.

Pure: works on ``(seconds since the process started, line)`` pairs, so it is tested on a stored log and
needs no GPU. Patterns were read in vLLM 0.24's source (the same messages are in 0.32 and 0.33); a marker
that a version does not print leaves its stage out instead of failing the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Line = tuple[float, str]

# (stage name, regex of the line that ENDS it), in start-up order. A stage runs from the previous marker
# that was seen to this one.
STAGE_MARKERS: tuple[tuple[str, str], ...] = (
    ("api_server_imports", r"non-default args"),
    # vLLM inspects the model class in a subprocess unless VLLM_CACHE_ROOT/modelinfos has it cached.
    ("model_class_inspection", r"Resolved architecture"),
    ("engine_core_spawn", r"Initializing a V1 LLM engine"),
    ("engine_setup_to_weight_load", r"Starting to load model"),
    ("weight_load", r"Model loading took"),
    ("torch_compile", r"torch\.compile took|torch\.compile takes"),
    ("memory_profiling", r"Available KV cache memory"),
    ("kv_cache_and_cuda_graphs", r"Graph capturing finished"),
    ("engine_ready", r"init engine \(profile, create kv cache, warmup model\) took"),
    ("api_server_routes", r"Starting vLLM server on"),
    ("uvicorn_startup", r"Application startup complete"),
)

_NUM = r"([0-9][0-9,]*\.?[0-9]*)"
# vLLM's own figures: name -> (regex, group index -> field names). Values are floats (commas removed).
FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "weights_load_s": (rf"Loading weights took {_NUM} seconds", ("weights_load_s",)),
    "model_loading": (
        rf"Model loading took {_NUM} GiB(?: memory)? and {_NUM} seconds",
        ("weights_gib", "model_loading_s"),
    ),
    "dynamo_s": (rf"Dynamo bytecode transform time: {_NUM} s", ("dynamo_s",)),
    "compile_total_s": (rf"torch\.compile (?:took|takes) {_NUM} s in total", ("compile_total_s",)),
    "profiling_s": (rf"Initial profiling/warmup run took {_NUM} s", ("profiling_s",)),
    "kv_cache_gib": (rf"Available KV cache memory: {_NUM} GiB", ("kv_cache_gib",)),
    "kv_cache_tokens": (rf"GPU KV cache size: {_NUM} tokens", ("kv_cache_tokens",)),
    "max_concurrency": (
        rf"Maximum concurrency for {_NUM} tokens per request: {_NUM}x",
        ("max_concurrency_len", "max_concurrency"),
    ),
    "graphs": (
        rf"Graph capturing finished in {_NUM} secs?, took {_NUM} GiB",
        ("graph_capture_s", "graph_gib"),
    ),
    "cudagraph_estimate": (
        rf"current --gpu-memory-utilization={_NUM} is equivalent to --gpu-memory-utilization={_NUM}",
        ("gpu_util_requested", "gpu_util_equivalent_without_graphs"),
    ),
    "init_engine_s": (
        rf"init engine \(profile, create kv cache, warmup model\) took {_NUM} s",
        ("init_engine_s",),
    ),
}

# Lines worth keeping in the results as they are (which backend, what vLLM decided).
NOTABLE = re.compile(
    r"Using max model len|Resolved architecture|attention backend|FLASH_ATTN|max_num_batched_tokens|"
    r"Chunked prefill|prefix caching|[Aa]sync scheduling|cudagraph_mode|Profiling CUDA graph memory|"
    r"compile cache|Directly load|Cache the graph|torch.compile cache|non-default args|WARNING|ERROR|"
    r"Traceback|Error"
)


@dataclass(frozen=True)
class StartupReport:
    stages: dict[str, float]
    markers: dict[str, float]
    figures: dict[str, float]
    notable: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "stages_s": self.stages,
            "markers_s": self.markers,
            "figures": self.figures,
            "notable": self.notable,
        }


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def first_markers(lines: Iterable[Line]) -> dict[str, float]:
    """Time each stage marker was first seen."""
    found: dict[str, float] = {}
    compiled = [(name, re.compile(rx)) for name, rx in STAGE_MARKERS]
    for t, text in lines:
        for name, rx in compiled:
            if name not in found and rx.search(text):
                found[name] = t
    return found


def stage_durations(markers: dict[str, float], ready_at: float | None) -> dict[str, float]:
    """Seconds per stage: each from the previous seen marker (or the process start) to its own."""
    out: dict[str, float] = {}
    previous = 0.0
    for name, _ in STAGE_MARKERS:
        if name in markers:
            out[name] = round(markers[name] - previous, 2)
            previous = markers[name]
    if ready_at is not None:
        out["until_health_200"] = round(ready_at - previous, 2)
    return out


def figures(lines: Iterable[Line]) -> dict[str, float]:
    """vLLM's own numbers (first occurrence of each; compile ranges are summed)."""
    out: dict[str, float] = {}
    compiled = {key: (re.compile(rx), names) for key, (rx, names) in FIGURES.items()}
    graph_compile = re.compile(rf"Compiling a graph for .* takes {_NUM} s")
    compile_sum = 0.0
    for _, text in lines:
        for rx, names in compiled.values():
            match = rx.search(text)
            if match and names[0] not in out:
                for i, field in enumerate(names, start=1):
                    out[field] = _number(match.group(i))
        match = graph_compile.search(text)
        if match:
            compile_sum += _number(match.group(1))
    if compile_sum:
        out["inductor_graph_compile_s"] = round(compile_sum, 2)
    return out


def parse_startup(lines: Sequence[Line], ready_at: float | None, notable_limit: int = 40) -> StartupReport:
    markers = first_markers(lines)
    notable = [f"[{t:7.1f}] {text[:300]}" for t, text in lines if NOTABLE.search(text)][:notable_limit]
    return StartupReport(
        stages=stage_durations(markers, ready_at),
        markers={k: round(v, 2) for k, v in markers.items()},
        figures=figures(lines),
        notable=notable,
    )


def read_stamped(path: str) -> list[Line]:
    """Lines of a log written by ``device`` as ``[   12.345] text``."""
    out: list[Line] = []
    stamp = re.compile(r"^\[\s*([0-9.]+)\] ?(.*)$")
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            match = stamp.match(raw.rstrip("\n"))
            if match:
                out.append((float(match.group(1)), match.group(2)))
    return out
