"""End-to-end fixtures: the vLLM CPU environment, tiny TeleChat2 checkpoints, the operator, a local node."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import ROOT, Cluster
from tests.operator_process import OperatorProcess, start_operator, stop_operator

sys.path.insert(0, str(ROOT / "hack"))
from local_node import CPU_IMAGE_ENV, LocalNode


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The vLLM CPU environment (installed once by hack/vllm-env.sh, cached outside the clone)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "vllm-env.sh")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"hack/vllm-env.sh failed:\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tiny_models(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight TeleChat2 checkpoints in both layouts: <dir>/telechat2 and <dir>/115b."""
    root = tmp_path_factory.mktemp("models")
    for layout in ("telechat2", "115b"):
        subprocess.run(
            [
                vllm_python,
                str(ROOT / "tests" / "e2e" / "tiny_telechat.py"),
                str(root / layout),
                "--layout",
                layout,
            ],
            check=True,
            capture_output=True,
        )
    return root


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    op = start_operator(cluster, name="operator-e2e")
    try:
        yield op
    finally:
        stop_operator(cluster, op)


@pytest.fixture(scope="module")
def local_node(
    cluster: Cluster, k8s: Any, vllm_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalNode]:
    """A Node whose pods run as local processes with the vLLM CPU environment as their image."""
    name = f"local-vllm-{secrets.token_hex(3)}"
    kubelet = LocalNode(
        k8s,
        name,
        vllm_python,
        tmp_path_factory.mktemp("kubelet"),
        image_env=CPU_IMAGE_ENV,
        gpus=4,
        labels={"telechat.test/local-vllm": "true"},
    )
    kubelet.register()
    try:
        yield kubelet
    finally:
        kubelet.stop()


def model_volume(cluster: Cluster, namespace: str, host_path: Path, claim: str = "tiny-model") -> None:
    """A hostPath PersistentVolume with the tiny checkpoints, bound to a claim in the namespace."""
    pv_name = f"{namespace}-{claim}"
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": {"telechat.test/namespace": namespace}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "manual",
            "hostPath": {"path": str(host_path)},
            "claimRef": {"namespace": namespace, "name": claim},
            "persistentVolumeReclaimPolicy": "Retain",
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "manual",
            "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([pv, pvc]), check=True)
