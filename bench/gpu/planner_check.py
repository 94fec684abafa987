"""The operator's memory planner applied to a case, and its error against what vLLM reported.

The planner sees what the operator knows at admission: the catalog shape, the rendered options and the
GPU product. Device-side differences that change memory (the case's depth) are passed in explicitly.
"""

from __future__ import annotations

import re
from typing import Any

from telechat_operator import planner
from telechat_operator.catalog import resolve_model

GPU_PRODUCT = "NVIDIA-H200"
_FLAG = re.compile(r"^--([a-z0-9-]+)(?:=(.*))?$")


def _extra_flags(args: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for arg in args:
        match = _FLAG.match(arg)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def predict(case: dict[str, Any], gpu_product: str = GPU_PRODUCT) -> dict[str, Any]:
    shape = resolve_model(case["model_id"]).shape
    assert shape is not None
    options, flags = case["vllm_options"], _extra_flags(case.get("extra_args", []))
    batched = flags.get("max-num-batched-tokens")
    seqs = flags.get("max-num-seqs")
    limits = planner.EngineLimits(
        max_num_batched_tokens=int(batched) if batched else None,
        max_num_seqs=int(seqs) if seqs else None,
        cuda_graphs="enforce-eager" not in flags and not options.get("enforce-eager"),
    )
    total = planner.gpu_total_bytes(gpu_product)
    assert total is not None
    plan = planner.plan(
        shape,
        total,
        tensor_parallel_size=int(options.get("tensor-parallel-size", 1)),
        pipeline_parallel_size=int(options.get("pipeline-parallel-size", 1)),
        dtype=str(options.get("dtype", "auto")),
        gpu_memory_utilization=float(options.get("gpu-memory-utilization", 0.92)),
        max_model_len=options.get("max-model-len"),
        limits=limits,
        layers=case["checkpoint"]["layers"],
    )
    gib = planner.GIB
    return {
        "gpu_product": gpu_product,
        "gpu_total_gib": round(total / gib, 2),
        "dtype": plan.dtype,
        "weights_gib": round(plan.weights_bytes / gib, 3),
        "activation_gib": round(plan.activation_bytes / gib, 3),
        "non_torch_gib": round(plan.non_torch_bytes / gib, 3),
        "cuda_graph_gib": round(plan.cuda_graph_bytes / gib, 3),
        "kv_cache_gib": round(plan.kv_cache_bytes / gib, 3),
        "kv_bytes_per_token": plan.kv_bytes_per_token,
        "kv_tokens": plan.kv_tokens,
        "max_model_len": plan.max_model_len,
        "full_length_requests": round(plan.full_length_requests, 2),
        "summary": plan.describe(),
    }


def compare(prediction: dict[str, Any], figures: dict[str, float]) -> dict[str, Any]:
    """Relative error (planner / vLLM - 1) for the figures vLLM reports."""
    out: dict[str, Any] = {}
    for ours, theirs in (
        ("weights_gib", "weights_gib"),
        ("kv_cache_gib", "kv_cache_gib"),
        ("kv_tokens", "kv_cache_tokens"),
    ):
        if figures.get(theirs):
            out[ours] = {
                "planner": prediction[ours],
                "vllm": figures[theirs],
                "error_pct": round(100 * (prediction[ours] / figures[theirs] - 1), 2),
            }
    return out
