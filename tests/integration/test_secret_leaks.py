"""No Secret value in the operator's debug log, statuses, Events, ConfigMaps, children or `render` output.

Secrets with random values are referenced by TeleChatDeployments (one Secret arrives late) and a
TeleChatBatchJob; after the operator has reconciled them all, every place it writes is scanned for the
values, raw and base64. Each scanned source must hold data, so the test cannot pass on empty input.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.helpers import ROOT, Cluster, wait_for
from tests.integration.tcd import wait_condition
from tests.leakscan import leaks
from tests.operator_process import OperatorProcess, start_operator, stop_operator

MODEL = {"name": "Tele-AI/TeleChat2-7B"}
RESOURCES = {"cpu": 2, "memory": "8Gi"}
REQUEST = {
    "custom_id": "a",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"messages": [{"role": "user", "content": "Hello"}]},
}
CHILD_KINDS = "deployments,services,jobs,pods,configmaps,persistentvolumeclaims,poddisruptionbudgets"


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    """This module's operator logs at debug level: request and patch bodies included."""
    op = start_operator(cluster, debug=True, name="operator-debug")
    try:
        yield op
    finally:
        stop_operator(cluster, op)


def secret(name: str, key: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: value}}


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "telechat.ai/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def apply_docs(cluster: Cluster, ns: str, *docs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs), check=True)


def get_json(cluster: Cluster, ns: str, what: str) -> str:
    return str(cluster.kubectl("get", "-n", ns, what, "-o", "json", check=True).stdout)


def batch_inputs(ns: str) -> list[dict[str, Any]]:
    """The batch's prompts ConfigMap and an output claim bound to a hostPath PV (the scheduler needs it)."""
    pv = f"{ns}-results"
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "prompts"},
            "data": {"requests.jsonl": json.dumps(REQUEST) + "\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "labels": {"telechat.test/namespace": ns}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/tmp/telechat-test-pv/{pv}"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "results"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


def render_output(cluster: Cluster, ns: str, docs: list[dict[str, Any]]) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "telechat_operator.cli", "render", "-f", "-", "-n", ns],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cluster.env,
        timeout=60,
        check=True,
    )
    return proc.stdout + proc.stderr


def test_no_secret_value_anywhere_the_operator_writes(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    hf, api, late = (f"{p}{secrets.token_urlsafe(24)}" for p in ("hf_", "sk-", "late-"))
    values = [hf, api, late]
    served = resource(
        "TeleChatDeployment",
        "served",
        {
            "model": {**MODEL, "hfTokenSecretRef": {"name": "hf"}},
            "apiKeySecretRef": {"name": "api", "key": "key"},
            "resources": RESOURCES,
        },
    )
    waiting = resource(
        "TeleChatDeployment",
        "waiting",
        {"model": MODEL, "apiKeySecretRef": {"name": "late", "key": "key"}, "resources": RESOURCES},
    )
    nightly = resource(
        "TeleChatBatchJob",
        "nightly",
        {
            "model": {**MODEL, "hfTokenSecretRef": {"name": "hf"}},
            "input": {"configMap": {"name": "prompts", "key": "requests.jsonl"}},
            "output": {"pvc": {"claimName": "results", "path": "runs/nightly.jsonl"}},
        },
    )
    try:
        apply_docs(
            cluster, namespace, secret("hf", "token", hf), secret("api", "key", api), *batch_inputs(namespace)
        )
        apply_docs(cluster, namespace, served, waiting, nightly)
        wait_condition(cluster, namespace, "waiting", "SpecValid", "False", reason="SecretNotFound")
        apply_docs(cluster, namespace, secret("late", "key", late))
        wait_condition(cluster, namespace, "served", "Ready", "True")
        wait_condition(cluster, namespace, "waiting", "Ready", "True", timeout=60)
        wait_for(
            lambda: "Succeeded" in get_json(cluster, namespace, "tcb/nightly"),
            timeout=60,
            message="batch done",
        )

        # The scanner does find the values where they legitimately are (base64 in the Secrets' data).
        assert len(leaks(get_json(cluster, namespace, "secrets"), values)) >= len(values)

        sources = {
            "operator log (debug)": operator.log_path.read_text(errors="replace"),
            "statuses": get_json(cluster, namespace, "telechatdeployments,telechatbatchjobs"),
            "events": get_json(cluster, namespace, "events"),
            "children and ConfigMaps": get_json(cluster, namespace, CHILD_KINDS),
            "render": render_output(cluster, namespace, [served, waiting, nightly]),
        }
        # Not vacuous: each source holds what it should before its absence of leaks means anything.
        log = sources["operator log (debug)"]
        assert "[DEBUG" in log and all(f"{namespace}/{n}]" in log for n in ("served", "waiting", "nightly"))
        statuses = json.loads(sources["statuses"])["items"]
        assert len(statuses) == 3 and all(item["status"].get("conditions") for item in statuses)
        reasons = {e["reason"] for e in json.loads(sources["events"])["items"]}
        assert {"SecretNotFound", "ModelServing"} <= reasons, reasons
        kinds = {o["kind"] for o in json.loads(sources["children and ConfigMaps"])["items"]}
        assert {"Deployment", "Service", "Job", "Pod", "ConfigMap"} <= kinds, kinds
        assert sources["render"].count("kind: Deployment") == 2 and "kind: Job" in sources["render"]
        assert "secretKeyRef" in sources["render"], "the render references the Secrets"

        found = {where: hits for where, text in sources.items() if (hits := leaks(text, values))}
        assert found == {}, f"Secret values leaked: {found}"
    finally:
        cluster.kubectl("delete", "pv", "-l", f"telechat.test/namespace={namespace}", "--wait=false")
