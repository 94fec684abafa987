"""The Helm chart on the real control plane, with the operator run from the working tree as the chart's
ServiceAccount: any permission the chart forgets fails these tests.

No image can be built here, so the chart's Deployment is installed (kwok fakes its pod) and the operator
itself runs as a local process with the same arguments and configuration, authenticated by a token of the
release's ServiceAccount. The webhook is the one difference: its server mode listens on all interfaces and
the API server could not reach it through the Service anyway, so the process runs with --webhook=off; the
chart's webhook objects (Service, configuration, certificate) are still installed, upgraded and removed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import ROOT, Cluster, tool, wait_for
from tests.operator_process import free_port

CHART = ROOT / "charts" / "telechat-operator"
CLUSTER_SCOPED = ("clusterroles", "clusterrolebindings", "validatingwebhookconfigurations")
RBAC_DENIED = re.compile(r'forbidden: User "system:serviceaccount:[^"]+" cannot ', re.IGNORECASE)


# --- helpers ---------------------------------------------------------------------------------------------


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(tool("helm")), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=cluster.env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    out = cluster.kubectl(*args, "-o", "json", check=True).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def tcd_manifest(name: str, namespace: str, cache: bool = True) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "telechat.ai/v1alpha1",
        "kind": "TeleChatDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "Tele-AI/TeleChat2-7B"},
            "engine": {"dtype": "bfloat16"},
            "resources": {"cpu": 1, "memory": "2Gi"},
        },
    }
    if cache:
        doc["spec"]["model"]["cache"] = {"size": "1Gi"}
    return yaml.safe_dump(doc)


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "telechatdeployment", name, "-n", namespace).get("status") or {}


def reconciled(cluster: Cluster, namespace: str, name: str) -> bool:
    obj = kubectl_json(cluster, "get", "telechatdeployment", name, "-n", namespace)
    status = obj.get("status") or {}
    types = {c["type"] for c in status.get("conditions") or []}
    return (
        status.get("observedGeneration") == obj["metadata"]["generation"] and {"Ready", "SpecValid"} <= types
    )


def children(cluster: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """kind/name -> metadata of the objects the operator made for one resource."""
    found: dict[str, dict[str, Any]] = {}
    for kind in ("configmap", "service", "deployment.apps", "persistentvolumeclaim"):
        items = kubectl_json(
            cluster, "get", kind, "-n", namespace, "-l", f"app.kubernetes.io/instance={name}"
        )["items"]
        for item in items:
            found[f"{item['kind']}/{item['metadata']['name']}"] = item["metadata"]
    return found


@dataclass
class Release:
    name: str
    namespace: str
    cluster: Cluster
    workdir: Path
    processes: list[OperatorProc] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.name}-telechat-operator"

    def deployment_args(self) -> list[str]:
        deployment = kubectl_json(self.cluster, "get", "deployment", self.fullname, "-n", self.namespace)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["telechat-operator"]
        return list(container["args"])

    def config_file(self) -> Path:
        cm = kubectl_json(self.cluster, "get", "configmap", f"{self.fullname}-config", "-n", self.namespace)
        path = self.workdir / f"{self.name}-config.yaml"
        path.write_text(cm["data"]["config.yaml"])
        return path

    def service_account_kubeconfig(self) -> Path:
        """A kubeconfig that authenticates as the release's ServiceAccount (a TokenRequest token)."""
        token = self.cluster.kubectl(
            "create", "token", self.fullname, "-n", self.namespace, "--duration=1h", check=True
        ).stdout.strip()
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        server = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": server}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
            "current-context": "operator",
        }
        path = self.workdir / f"{self.name}-sa.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def start_operator(self, identity: str, extra: tuple[str, ...] = ()) -> OperatorProc:
        """The chart's container arguments, run from the working tree as the chart's ServiceAccount."""
        health = free_port()
        args: list[str] = []
        for arg in self.deployment_args():
            if arg.startswith("--liveness="):
                arg = f"--liveness=http://127.0.0.1:{health}/healthz"
            elif arg.startswith("--webhook"):
                continue
            args.append(arg.replace("$(POD_NAMESPACE)", self.namespace).replace("$(POD_NAME)", identity))
        args += ["--webhook=off", "--verbose", *extra]
        script = Path(sys.executable).parent / "telechat-operator"
        command = [str(script)] if script.is_file() else [sys.executable, "-m", "telechat_operator.cli"]
        env = {k: v for k, v in self.cluster.env.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(self.service_account_kubeconfig())
        env["TELECHAT_OPERATOR_CONFIG"] = str(self.config_file())
        log_path = self.workdir / f"{identity}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*command, *args], cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        op = OperatorProc(proc=proc, log_path=log_path, health_port=health, identity=identity)
        self.processes.append(op)
        wait_for(lambda: op.healthy() or not op.alive(), timeout=60, message=f"{identity} health endpoint")
        assert op.alive(), f"operator exited at start:\n{op.log()}"
        return op

    def stop_all(self) -> None:
        for op in self.processes:
            op.stop()


@dataclass
class OperatorProc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    health_port: int
    identity: str

    def log(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as rsp:
                return bool(rsp.status == 200)
        except OSError:
            return False

    def forbidden(self) -> list[str]:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        # RBAC denials read 'X is forbidden: User "system:serviceaccount:..." cannot VERB resource ...'
        # (other 403s, e.g. writes into a namespace being deleted by another test, are not RBAC gaps).
        return [line for line in text.splitlines() if RBAC_DENIED.search(line)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.returncode is None:
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it stopped
                except ProcessLookupError:
                    return
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _new_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name, check=True)
    return name


def _delete_namespace(cluster: Cluster, name: str) -> None:
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def _install(cluster: Cluster, name: str, namespace: str, *values: str) -> None:
    helm(cluster, "install", name, str(CHART), "--namespace", namespace, *values)


def _cluster_scoped_of(cluster: Cluster, release: str) -> list[str]:
    found = []
    for kind in CLUSTER_SCOPED:
        out = cluster.kubectl("get", kind, "-o", "name", "-l", f"app.kubernetes.io/instance={release}").stdout
        found += out.split()
        # Also by name, in case a template lost its labels.
        names = cluster.kubectl("get", kind, "-o", "name").stdout.split()
        found += [n for n in names if n.split("/", 1)[1].startswith(f"{release}-telechat-operator")]
    return sorted(set(found))


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ops_namespace(cluster: Cluster) -> Iterator[str]:
    name = _new_namespace(cluster, "helm-ops")
    try:
        yield name
    finally:
        _delete_namespace(cluster, name)


@pytest.fixture(scope="module")
def workload_namespace(cluster: Cluster) -> Iterator[str]:
    name = _new_namespace(cluster, "helm-apps")
    try:
        yield name
    finally:
        _delete_namespace(cluster, name)


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, ops_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart installed cluster-wide (defaults), for the tests of this module in order."""
    rel = Release(
        name=f"tc{secrets.token_hex(2)}",
        namespace=ops_namespace,
        cluster=cluster,
        workdir=tmp_path_factory.mktemp("helm"),
    )
    _install(cluster, rel.name, rel.namespace)
    try:
        yield rel
    finally:
        rel.stop_all()
        helm(cluster, "uninstall", rel.name, "--namespace", rel.namespace, "--wait", check=False)


def ensure_reconciled(cluster: Cluster, release: Release, namespace: str, name: str) -> None:
    """A reconciled resource, whatever ran before (so each test also runs on its own with -k)."""
    if not any(op.alive() for op in release.processes):
        release.start_operator(f"operator-{secrets.token_hex(2)}")
    if cluster.kubectl("get", "telechatdeployment", name, "-n", namespace).returncode != 0:
        cluster.kubectl("apply", "-f", "-", input=tcd_manifest(name, namespace), check=True)
    wait_for(lambda: reconciled(cluster, namespace, name), timeout=60, message=f"status of {name}")


# --- tests --------------------------------------------------------------------------------------------------

RENDER_CASES = {
    "defaults": [],
    "namespaced": ["--set", "watch.scope=namespaces", "--set-json", 'watch.namespaces=["{ns}"]'],
    "ha-no-webhook": ["--set", "replicaCount=3", "--set", "webhook.enabled=false"],
}


@pytest.mark.parametrize("case", RENDER_CASES)
def test_rendered_chart_passes_server_side_validation(
    cluster: Cluster, ops_namespace: str, case: str
) -> None:
    """`helm template` output validated by the API server itself (schemas, strict fields, RBAC escalation)."""
    values = [v.replace("{ns}", ops_namespace) for v in RENDER_CASES[case]]
    rendered = helm(
        cluster, "template", f"dry-{case[:2]}", str(CHART), "--namespace", ops_namespace, *values
    ).stdout
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "--server-side", "-f", "-", input=rendered
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d])


def test_invalid_values_are_refused_at_install(cluster: Cluster, ops_namespace: str) -> None:
    proc = helm(
        cluster,
        "install",
        "refused",
        str(CHART),
        "--namespace",
        ops_namespace,
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
        check=False,
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert "at '/leaderElection/enabled': value must be true" in proc.stderr
    assert "refused" not in helm(cluster, "list", "--namespace", ops_namespace, "-q").stdout
    assert not _cluster_scoped_of(cluster, "refused")


def test_operator_as_the_service_account_reconciles(
    cluster: Cluster, release: Release, workload_namespace: str
) -> None:
    op = release.start_operator("operator-a")
    wait_for(
        lambda: (
            kubectl_json(cluster, "get", "lease", release.fullname, "-n", release.namespace)["spec"].get(
                "holderIdentity"
            )
            == "operator-a"
        ),
        timeout=30,
        message="the operator to take the leader-election Lease",
        ignore=(AssertionError,),
    )
    cluster.kubectl("apply", "-f", "-", input=tcd_manifest("chat", workload_namespace), check=True)
    wait_for(
        lambda: reconciled(cluster, workload_namespace, "chat"),
        timeout=60,
        message=f"status of the TeleChatDeployment; operator log:\n{op.log()}",
    )
    made = children(cluster, workload_namespace, "chat")
    assert {
        "ConfigMap/chat-engine",
        "Service/chat",
        "Deployment/chat",
        "PersistentVolumeClaim/chat-model-cache",
    } <= set(made), made
    status = status_of(cluster, workload_namespace, "chat")
    assert status["modelId"] == "Tele-AI/TeleChat2-7B"
    assert status["endpoint"] == f"http://chat.{workload_namespace}.svc:8000/v1"
    # Events on condition transitions (events: create).
    wait_for(
        lambda: kubectl_json(
            cluster, "get", "events", "-n", workload_namespace, "--field-selector", "involvedObject.name=chat"
        )["items"],
        timeout=30,
        message="an Event about the TeleChatDeployment",
    )
    # Dropping the cache from the spec deletes its PVC (persistentvolumeclaims: delete).
    cluster.kubectl(
        "apply", "-f", "-", input=tcd_manifest("chat", workload_namespace, cache=False), check=True
    )
    wait_for(
        lambda: "PersistentVolumeClaim/chat-model-cache" not in children(cluster, workload_namespace, "chat"),
        timeout=30,
        message=f"the cache PVC to be pruned; operator log:\n{op.log()}",
    )
    wait_for(
        lambda: reconciled(cluster, workload_namespace, "chat"), timeout=30, message="status of generation 2"
    )
    assert not op.forbidden(), "\n".join(op.forbidden())
    assert op.alive(), op.log()


def test_upgrade_keeps_resources_and_certificate(
    cluster: Cluster, release: Release, workload_namespace: str
) -> None:
    ensure_reconciled(cluster, release, workload_namespace, "chat")
    before_tcd = kubectl_json(cluster, "get", "telechatdeployment", "chat", "-n", workload_namespace)[
        "metadata"
    ]
    before_children = children(cluster, workload_namespace, "chat")
    secret_name = f"{release.fullname}-webhook-tls"
    before_secret = kubectl_json(cluster, "get", "secret", secret_name, "-n", release.namespace)["data"]
    before_deploy = kubectl_json(cluster, "get", "deployment", release.fullname, "-n", release.namespace)

    helm(
        cluster,
        "upgrade",
        release.name,
        str(CHART),
        "--namespace",
        release.namespace,
        "--reuse-values",
        "--set",
        "config.workers=4",
    )

    after_tcd = kubectl_json(cluster, "get", "telechatdeployment", "chat", "-n", workload_namespace)[
        "metadata"
    ]
    assert after_tcd["uid"] == before_tcd["uid"]
    assert after_tcd["generation"] == before_tcd["generation"]
    after_children = children(cluster, workload_namespace, "chat")
    assert set(after_children) == set(before_children)
    for key, meta in after_children.items():
        assert meta["uid"] == before_children[key]["uid"], key
        assert meta.get("generation") == before_children[key].get("generation"), key
    # The certificate is looked up, not regenerated: the caBundle and the pods' annotation are stable.
    assert (
        kubectl_json(cluster, "get", "secret", secret_name, "-n", release.namespace)["data"] == before_secret
    )
    vwc = kubectl_json(cluster, "get", "validatingwebhookconfiguration", release.fullname)
    assert vwc["webhooks"][0]["clientConfig"]["caBundle"] == before_secret["ca.crt"]
    after_deploy = kubectl_json(cluster, "get", "deployment", release.fullname, "-n", release.namespace)
    before_ann = before_deploy["spec"]["template"]["metadata"]["annotations"]
    after_ann = after_deploy["spec"]["template"]["metadata"]["annotations"]
    assert after_ann["checksum/webhook-cert"] == before_ann["checksum/webhook-cert"]
    assert after_ann["checksum/config"] != before_ann["checksum/config"], "a config change rolls the pods"
    config = yaml.safe_load(
        kubectl_json(cluster, "get", "configmap", f"{release.fullname}-config", "-n", release.namespace)[
            "data"
        ]["config.yaml"]
    )
    assert config["workers"] == 4
    assert reconciled(cluster, workload_namespace, "chat")


def test_leader_election_one_reconciles_and_a_standby_takes_over(
    cluster: Cluster, release: Release, workload_namespace: str
) -> None:
    fast = (
        "--leader-elect-lease-seconds=6",
        "--leader-elect-renew-deadline=4",
        "--leader-elect-retry-period=1",
    )
    release.stop_all()
    leader = release.start_operator("leader-1", fast)
    lease = ("get", "lease", release.fullname, "-n", release.namespace)

    def holder() -> str:
        return str(kubectl_json(cluster, *lease)["spec"].get("holderIdentity") or "")

    wait_for(lambda: holder() == "leader-1", timeout=30, message="leader-1 to hold the Lease")
    standby = release.start_operator("standby-2", fast)
    assert standby.healthy(), "a standby serves its health endpoint"
    time.sleep(2)
    assert holder() == "leader-1", "the standby must not take a live Lease"
    transitions = int(kubectl_json(cluster, *lease)["spec"].get("leaseTransitions") or 0)

    # Freeze the leader: it stops renewing. A resource created now is seen by the standby's watches but must
    # not be reconciled until the Lease has expired and the standby has taken it.
    os.kill(leader.proc.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=tcd_manifest("failover", workload_namespace), check=True)
    time.sleep(2.5)
    assert not status_of(cluster, workload_namespace, "failover"), "the standby reconciled while not leading"
    wait_for(
        lambda: holder() == "standby-2", timeout=30, message=f"the standby to take over:\n{standby.log()}"
    )
    took = time.monotonic() - frozen_at
    assert took >= 3, f"the standby took a Lease that had not expired ({took:.1f} s)"
    wait_for(
        lambda: reconciled(cluster, workload_namespace, "failover"),
        timeout=30,
        message=f"the new leader to reconcile; log:\n{standby.log()}",
    )
    assert int(kubectl_json(cluster, *lease)["spec"]["leaseTransitions"]) == transitions + 1

    # The old leader wakes up, finds another holder and exits rather than reconcile alongside it.
    os.kill(leader.proc.pid, signal.SIGCONT)
    assert leader.proc.wait(timeout=30) == 75, leader.log()
    assert "lost lease" in leader.log()

    # A clean shutdown releases the Lease, so that the next replica need not wait for it to expire.
    standby.stop()
    assert standby.proc.returncode == 0, standby.log()
    assert holder() == ""
    assert not leader.forbidden() and not standby.forbidden(), leader.forbidden() + standby.forbidden()


def test_uninstall_leaves_no_cluster_scoped_objects(
    cluster: Cluster, release: Release, workload_namespace: str
) -> None:
    ensure_reconciled(cluster, release, workload_namespace, "chat")
    release.stop_all()
    assert _cluster_scoped_of(cluster, release.name), "the release should own cluster-scoped objects before"
    helm(cluster, "uninstall", release.name, "--namespace", release.namespace, "--wait")
    assert _cluster_scoped_of(cluster, release.name) == []
    for kind in ("serviceaccount", "configmap", "secret", "service", "deployment", "role", "rolebinding"):
        left = cluster.kubectl(
            "get",
            kind,
            "-n",
            release.namespace,
            "-o",
            "name",
            "-l",
            f"app.kubernetes.io/instance={release.name}",
        ).stdout.split()
        assert left == [], f"{kind}: {left}"
    # Helm keeps CRDs by design (documented in docs/install.md), and with them the users' resources.
    cluster.kubectl("get", "crd", "telechatdeployments.telechat.ai", check=True)
    cluster.kubectl("get", "telechatdeployment", "chat", "-n", workload_namespace, check=True)


def test_namespaced_release_works_with_roles_only(cluster: Cluster, tmp_path: Path) -> None:
    """watch.scope=namespaces: Roles in the watched namespace, nothing granted elsewhere."""
    ops = _new_namespace(cluster, "helm-nsops")
    watched = _new_namespace(cluster, "helm-watched")
    other = _new_namespace(cluster, "helm-other")
    rel = Release(name=f"tn{secrets.token_hex(2)}", namespace=ops, cluster=cluster, workdir=tmp_path)
    try:
        _install(
            cluster,
            rel.name,
            ops,
            "--set",
            "watch.scope=namespaces",
            "--set-json",
            f'watch.namespaces=["{watched}"]',
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "webhook.enabled=false",
        )
        sa = f"system:serviceaccount:{ops}:{rel.fullname}"
        for ns, expected in ((watched, "yes"), (other, "no")):
            can = cluster.kubectl("auth", "can-i", "patch", "deployments.apps", "-n", ns, "--as", sa)
            assert can.stdout.strip() == expected, (ns, can.stdout, can.stderr)
        op = rel.start_operator("ns-operator")
        cluster.kubectl("apply", "-f", "-", input=tcd_manifest("scoped", watched), check=True)
        wait_for(
            lambda: reconciled(cluster, watched, "scoped"),
            timeout=60,
            message=f"status in the watched namespace; log:\n{op.log()}",
        )
        assert "Deployment/scoped" in children(cluster, watched, "scoped")
        cluster.kubectl("apply", "-f", "-", input=tcd_manifest("ignored", other), check=True)
        time.sleep(2)
        assert not status_of(cluster, other, "ignored"), "a namespace outside watch.namespaces was reconciled"
        assert not op.forbidden(), "\n".join(op.forbidden())
        rel.stop_all()
        helm(cluster, "uninstall", rel.name, "--namespace", ops, "--wait")
        assert _cluster_scoped_of(cluster, rel.name) == []
        roles = cluster.kubectl("get", "roles", "-n", watched, "-o", "name").stdout.split()
        assert f"role.rbac.authorization.k8s.io/{rel.fullname}" not in roles
    finally:
        rel.stop_all()
        helm(cluster, "uninstall", rel.name, "--namespace", ops, check=False)
        for ns in (ops, watched, other):
            _delete_namespace(cluster, ns)
