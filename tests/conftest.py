"""Shared fixtures: the local control plane (hack/cluster.sh) for integration and end-to-end tests.

Only tests that ask for ``cluster`` (directly or through ``k8s``, ``namespace``, ``kubectl``) start it,
so unit tests run without one. A cluster already running when the session starts is reused and left
running; one a test session started is stopped when the last session using it ends, unless
TELECHAT_KEEP_CLUSTER=1. TELECHAT_CLUSTER_DIR picks another cluster folder (default <repo>/.cluster).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import subprocess
import sys
import time
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


def _run_cluster_sh(
    command: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


@contextlib.contextmanager
def _cluster_lock(lock_file: Path, timeout: float = 900) -> Iterator[None]:
    """Hold hack/cluster.sh's own lock (flock) so no other session's up/down runs in between."""
    deadline = time.monotonic() + timeout
    with lock_file.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{lock_file} stayed locked for {timeout:g} s", pytrace=False)
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_users(users: Path) -> list[Path]:
    """Registered test sessions still running; files of sessions that died are removed."""
    live = []
    for entry in users.glob("*"):
        if entry.name.isdigit() and _pid_alive(int(entry.name)):
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local control plane, started through ``bash hack/cluster.sh up`` when not already running.

    Several pytest sessions may share one cluster folder: each registers itself, and a cluster that a
    test session started is stopped by the last session to finish. A cluster started otherwise (by
    ``make cluster-up`` or the demo) is left running.
    """
    lock_file = Path(_run_cluster_sh("lockfile", timeout=30).stdout.strip())
    users = lock_file.with_suffix(".users")
    started_marker = (
        Path(_run_cluster_sh("kubeconfig", timeout=30).stdout.strip()).parent / ".started-by-tests"
    )
    locked_env = {**os.environ, "TELECHAT_CLUSTER_LOCKED": "1"}
    me = users / str(os.getpid())

    with _cluster_lock(lock_file):
        proc = _run_cluster_sh("up", timeout=900, env=locked_env)
        if proc.returncode != 0:
            output = f"{proc.stdout}{proc.stderr}"
            pytest.fail(f"bash hack/cluster.sh up failed ({proc.returncode}):\n{output}", pytrace=False)
        started_here = "already up and healthy" not in proc.stderr
        if started_here:
            started_marker.touch()
        users.mkdir(exist_ok=True)
        me.touch()

    cluster_dir = started_marker.parent
    kubeconfig = cluster_dir / "kubeconfig"
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
    try:
        yield Cluster(dir=cluster_dir, kubeconfig=kubeconfig, started_here=started_here, env=env)
    finally:
        with _cluster_lock(lock_file):
            me.unlink(missing_ok=True)
            if os.environ.get("TELECHAT_KEEP_CLUSTER", "") in ("1", "true", "yes"):
                started_marker.unlink(missing_ok=True)  # from now on it counts as started by hand
            if started_marker.exists() and not _live_users(users):
                proc = _run_cluster_sh("down", timeout=120, env=locked_env)
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
