"""Shared fixtures: the local control plane (hack/cluster.sh) for integration and end-to-end tests.

Only tests that ask for ``cluster`` (directly or through ``k8s``, ``namespace``, ``kubectl``) start it,
so unit tests run without one. A cluster already running when the session starts is reused and left
running; one the session started is stopped at the end, unless TELECHAT_KEEP_CLUSTER=1.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[1]
# `from tests.helpers import ...` works however pytest was started (pytest, python -m pytest, any cwd).
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.helpers import ROOT, TOOLS_BIN, Cluster, Kubectl  # noqa: E402

CLUSTER_SH = ROOT / "hack" / "cluster.sh"

_AUTO_MARKS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests under tests/integration and tests/e2e so ``-m "not integration"`` etc. work."""
    tests_dir = ROOT / "tests"
    for item in items:
        try:
            parts = item.path.resolve().relative_to(tests_dir).parts
        except ValueError:
            continue
        if parts and parts[0] in _AUTO_MARKS:
            item.add_marker(_AUTO_MARKS[parts[0]])


def _cluster_dir() -> Path:
    return Path(os.environ.get("TELECHAT_CLUSTER_DIR") or ROOT / ".cluster").resolve()


def _run_cluster_sh(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local control plane, started through ``bash hack/cluster.sh up`` when not already running."""
    cluster_dir = _cluster_dir()
    already_up = _run_cluster_sh("status", timeout=60).returncode == 0
    if not already_up:
        proc = _run_cluster_sh("up", timeout=900)
        if proc.returncode != 0:
            output = f"{proc.stdout}{proc.stderr}"
            pytest.fail(f"bash hack/cluster.sh up failed ({proc.returncode}):\n{output}", pytrace=False)
    kubeconfig = cluster_dir / "kubeconfig"
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    try:
        yield Cluster(dir=cluster_dir, kubeconfig=kubeconfig, started_here=not already_up, env=env)
    finally:
        if not already_up and os.environ.get("TELECHAT_KEEP_CLUSTER", "") not in ("1", "true", "yes"):
            proc = _run_cluster_sh("down", timeout=120)
            if proc.returncode != 0:
                print(f"bash hack/cluster.sh down failed:\n{proc.stdout}{proc.stderr}", file=sys.stderr)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    """``kubectl(*args, check=False, input=None, timeout=60)``: run kubectl against the cluster."""
    return cluster.kubectl


@pytest.fixture(scope="session")
def k8s(cluster: Cluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the cluster's admin kubeconfig."""
    from kubernetes import config  # imported here so unit tests never need the client

    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api_client
    finally:
        api_client.close()


def _namespace_name(test_name: str) -> str:
    short = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")[:40].strip("-")
    return f"t-{short or 'test'}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(k8s: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (``t-<test name>-<random>``), deleted afterwards without waiting."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s)
    name = _namespace_name(request.node.name)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"telechat.test/namespace": "true"})
        )
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
