"""Without the webhook, the reconciler is the safety net: a status condition and an Event, no children."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.helpers import Cluster
from tests.integration.tcd import apply, condition, events, get, wait_condition
from tests.operator_process import OperatorProcess, start_operator, stop_operator


@pytest.fixture(scope="module")
def operator_without_webhook(cluster: Cluster) -> Iterator[OperatorProcess]:
    op = start_operator(cluster, webhook=False, name="operator-nowebhook")
    try:
        yield op
    finally:
        stop_operator(cluster, op)


def test_bad_resource_gets_condition_and_event_and_others_proceed(
    cluster: Cluster, namespace: str, operator_without_webhook: OperatorProcess
) -> None:
    apply(
        cluster,
        namespace,
        "bad",
        {"model": {"name": "Tele-AI/TeleChat2-115B"}, "engine": {"tensorParallelSize": 3}},
    )
    apply(cluster, namespace, "good", {"model": {"name": "Tele-AI/TeleChat2-7B"}})
    bad = wait_condition(cluster, namespace, "bad", "SpecValid", "False", reason="InvalidSpec")
    assert "valid sizes: 1, 2, 4, 8" in condition(bad, "SpecValid")["message"]
    assert bad["status"]["phase"] == "Invalid"
    assert get(cluster, namespace, "deployment", "bad") is None
    warnings = [e for e in events(cluster, namespace, "bad") if e["type"] == "Warning"]
    assert any("valid sizes" in e["message"] for e in warnings)
    # One bad resource never stops the reconcile of the others.
    wait_condition(cluster, namespace, "good", "Ready", "True")
    assert operator_without_webhook.alive()


def test_spec_broken_after_serving_keeps_the_last_good_children(
    cluster: Cluster, namespace: str, operator_without_webhook: OperatorProcess
) -> None:
    apply(
        cluster,
        namespace,
        "tc",
        {"model": {"name": "Tele-AI/TeleChat2-7B"}, "engine": {"tensorParallelSize": 2}},
    )
    wait_condition(cluster, namespace, "tc", "Ready", "True")
    apply(
        cluster,
        namespace,
        "tc",
        {"model": {"name": "Tele-AI/TeleChat2-7B"}, "engine": {"tensorParallelSize": 5}},
    )
    tcd = wait_condition(cluster, namespace, "tc", "SpecValid", "False")
    assert "previous configuration keeps serving (1/1 replicas ready)" in condition(tcd, "Ready")["message"]
    dep = get(cluster, namespace, "deployment", "tc")
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    # Fixing the spec recovers, with a Normal event.
    apply(
        cluster,
        namespace,
        "tc",
        {"model": {"name": "Tele-AI/TeleChat2-7B"}, "engine": {"tensorParallelSize": 4}},
    )
    wait_condition(cluster, namespace, "tc", "Ready", "True", timeout=90)
    assert any(e["type"] == "Normal" and e["reason"] == "Valid" for e in events(cluster, namespace, "tc"))
