"""When vLLM refuses what it was given, the resource's status carries vLLM's own words."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import model_volume
from tests.e2e.test_vllm_e2e import base_spec
from tests.helpers import Cluster
from tests.integration.tcd import apply, condition, events, wait_condition
from tests.operator_process import OperatorProcess


@pytest.fixture(scope="module")
def failures_ns(
    cluster: Cluster, operator: OperatorProcess, local_node: Any, tiny_models: Path
) -> Iterator[str]:
    ns = f"t-e2e-fail-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns, check=True)
    model_volume(cluster, ns, tiny_models)
    cluster.kubectl("create", "secret", "generic", "api-key", "-n", ns, "--from-literal=key=x", check=True)
    try:
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        cluster.kubectl("delete", "pv", f"{ns}-tiny-model", "--wait=false")


CASES = [
    # A flag the operator passes through, with a value vLLM's argument parser refuses.
    (
        "bad-arg",
        {"engine": {"extraArgs": ["--max-num-seqs=many"]}},
        "argument --max-num-seqs: invalid int value: 'many'",
    ),
    # A weights folder that does not exist on the volume.
    (
        "no-model",
        {
            "model": {
                "name": "Tele-AI/TeleChat2-7B",
                "servedModelName": "x",
                "pvc": {"claimName": "tiny-model", "path": "missing"},
            }
        },
        "/missing",
    ),
    # The catalog allows 32768 x 3 for TeleChat2-7B, but this checkpoint's seq_length is 4096: vLLM refuses.
    (
        "too-long",
        {"engine": {"maxModelLen": 20000, "ropeScaling": {"type": "dynamic", "factor": 3.0}}},
        "max_model_len (20000) is greater than the derived max_model_len",
    ),
]


@pytest.mark.parametrize(("name", "override", "expected"), CASES, ids=[c[0] for c in CASES])
def test_vllm_refusal_reaches_status(
    cluster: Cluster, local_node: Any, failures_ns: str, name: str, override: dict[str, Any], expected: str
) -> None:
    spec = base_spec(local_node)
    for key, value in override.items():
        spec[key] = {**spec[key], **value}
    apply(cluster, failures_ns, name, spec)
    tcd = wait_condition(
        cluster, failures_ns, name, "Degraded", "True", timeout=240, reason="CrashLoopBackOff"
    )
    message = condition(tcd, "Degraded")["message"]
    print(f"{name}: ...{message[-600:]}")
    assert expected in message
    assert condition(tcd, "Ready")["status"] == "False" and tcd["status"]["phase"] == "Degraded"
    warnings = [e for e in events(cluster, failures_ns, name) if e["type"] == "Warning"]
    assert any(e["reason"] == "CrashLoopBackOff" for e in warnings)
