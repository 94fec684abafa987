"""Model-aware validation: each bad spec is refused with a message naming the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from telechat_operator.deployment.reconciler import check_deployment as check
from telechat_operator.validation import SpecError

M115 = {"name": "Tele-AI/TeleChat2-115B"}
M7 = {"name": "Tele-AI/TeleChat2-7B"}

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("tp-not-divisor", {"model": M115, "engine": {"tensorParallelSize": 3}}, "valid sizes: 1, 2, 4, 8"),
    ("tp-above-kv-heads", {"model": M115, "engine": {"tensorParallelSize": 16}}, "8 KV heads"),
    ("tp-7b", {"model": M7, "engine": {"tensorParallelSize": 3}}, "32 attention heads"),
    (
        "pp-above-layers",
        {"model": M7, "engine": {"pipelineParallelSize": 31}},
        "exceeds Tele-AI/TeleChat2-7B's 30 layers",
    ),
    ("context-no-rope", {"model": M115, "engine": {"maxModelLen": 16384}}, "add engine.ropeScaling"),
    (
        "context-above-rope",
        {"model": M115, "engine": {"maxModelLen": 32768, "ropeScaling": {"type": "dynamic", "factor": 3}}},
        "8192 x rope factor 3 = 24576",
    ),
    ("zero-tp", {"model": M7, "engine": {"tensorParallelSize": 0}}, "spec.engine.tensorParallelSize"),
    ("negative-replicas", {"model": M7, "replicas": -1}, "spec.replicas"),
    ("bad-dtype", {"model": M7, "engine": {"dtype": "float64"}}, "spec.engine.dtype"),
    (
        "owned-flag",
        {"model": M7, "engine": {"extraArgs": ["--tensor-parallel-size=2"]}},
        "--tensor-parallel-size",
    ),
    (
        "owned-short-flag",
        {"model": M7, "engine": {"extraArgs": ["-tp", "2"]}},
        "-tp is rendered by the operator",
    ),
    ("owned-model-flag", {"model": M7, "engine": {"extraArgs": ["--model", "x"]}}, "--model"),
    (
        "owned-env",
        {"model": M7, "engine": {"env": [{"name": "HF_TOKEN", "value": "x"}]}},
        "HF_TOKEN is set by the operator",
    ),
    ("remote-code-off", {"model": {**M7, "trustRemoteCode": False}}, "trustRemoteCode"),
    ("rope-factor-1", {"model": M7, "engine": {"ropeScaling": {"type": "dynamic", "factor": 1.0}}}, "factor"),
    (
        "rope-type",
        {"model": M7, "engine": {"ropeScaling": {"type": "ntk", "factor": 2.0}}},
        "ropeScaling.type",
    ),
    ("unknown-field", {"model": M7, "engin": {}}, "Extra inputs are not permitted"),
    ("missing-model", {"replicas": 1}, "spec.model"),
    (
        "pvc-and-cache",
        {"model": {**M7, "pvc": {"claimName": "w"}, "cache": {"size": "1Gi"}}},
        "are exclusive",
    ),
    ("size-and-claim", {"model": {**M7, "cache": {"size": "1Gi", "existingClaim": "c"}}}, "not both"),
    (
        "weights-do-not-fit",
        {
            "model": M115,
            "engine": {"dtype": "bfloat16", "tensorParallelSize": 2},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        },
        "tensorParallelSize 4 would fit",
    ),
    ("bad-quantity", {"model": M7, "resources": {"memory": "lots"}}, "spec.resources.memory"),
    ("path-escape", {"model": {**M7, "pvc": {"claimName": "w", "path": "../etc"}}}, "spec.model.pvc.path"),
]


@pytest.mark.parametrize(("case", "spec", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_specs_are_refused(case: str, spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        check(spec)
    assert any(expected in e for e in err.value.errors), err.value.errors


GOOD: list[tuple[str, dict[str, Any]]] = [
    (
        "guide-115b",
        {
            "model": M115,
            "engine": {
                "tensorParallelSize": 4,
                "dtype": "float16",
                "maxModelLen": 24576,
                "ropeScaling": {"type": "dynamic", "factor": 3.0},
            },
        },
    ),
    (
        "115b-tp8-h100",
        {
            "model": M115,
            "engine": {"tensorParallelSize": 8, "dtype": "bfloat16"},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        },
    ),
    ("short-name", {"model": {"name": "telechat2-3b"}}),
    ("other-model", {"model": {"name": "Qwen/Qwen2.5-7B-Instruct"}, "engine": {"tensorParallelSize": 3}}),
    ("quantities", {"model": M7, "resources": {"cpu": 8, "memory": "64Gi", "sharedMemorySize": "2Gi"}}),
    (
        "extra-args",
        {"model": M7, "engine": {"extraArgs": ["--max-num-seqs", "128", "--enable-chunked-prefill"]}},
    ),
]


@pytest.mark.parametrize(("case", "spec"), GOOD, ids=[g[0] for g in GOOD])
def test_good_specs_pass(case: str, spec: dict[str, Any]) -> None:
    check(spec)


def test_warnings_are_not_errors() -> None:
    verdict = check({"model": M115, "engine": {"dtype": "float32", "tensorParallelSize": 8}})
    assert any("float32" in w for w in verdict.warnings)
    assert any("cache" in w for w in verdict.warnings)
