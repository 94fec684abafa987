"""Helpers for TeleChatDeployment integration tests: build manifests, read objects, wait on conditions."""

from __future__ import annotations

import json
from typing import Any

import yaml
from tests.helpers import Cluster, wait_for


def manifest(name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "telechat.ai/v1alpha1",
            "kind": "TeleChatDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def apply(cluster: Cluster, ns: str, name: str, spec: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest(name, spec), check=True)


def get(cluster: Cluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", "-n", ns, kind, name, "-o", "json", "--show-managed-fields")
    if proc.returncode != 0:
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def wait_condition(
    cluster: Cluster,
    ns: str,
    name: str,
    kind: str,
    status: str,
    timeout: float = 60,
    reason: str | None = None,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, ns, "tcd", name)
        cond = condition(obj, kind)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return obj
        return None

    result: dict[str, Any] = wait_for(
        check, timeout=timeout, interval=0.3, message=f"{name} {kind}={status} {reason or ''}"
    )
    return result


def events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    proc = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json", check=True
    )
    items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return items


def pods(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    proc = cluster.kubectl(
        "get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}", "-o", "json", check=True
    )
    items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return items
