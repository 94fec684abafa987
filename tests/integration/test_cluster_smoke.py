"""Smoke tests proving the local control plane is a real one: scheduling against GPU capacity, pod
lifecycle from kwok, garbage collection, CEL validation, server-side apply, and real versions."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.helpers import ROOT, Cluster, Kubectl, tool, wait_for

GPU = "nvidia.com/gpu"
H100 = "NVIDIA-H100-80GB-HBM3"


def _versions() -> dict[str, str]:
    text = (ROOT / "hack" / "versions.env").read_text()
    return dict(re.findall(r"^([A-Z_]+)=(\S+)$", text, flags=re.M))


def _deployment(name: str, gpus: int, annotations: dict[str, str] | None = None) -> client.V1Deployment:
    labels = {"app": name}
    resources = {GPU: str(gpus), "cpu": "1", "memory": "1Gi"}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="vllm",
                            image="registry.invalid/telechat/vllm:smoke",
                            resources=client.V1ResourceRequirements(requests=resources, limits=resources),
                        )
                    ]
                ),
            ),
        ),
    )


def _pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def _condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition | None:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def _is_ready(pod: client.V1Pod) -> bool:
    ready = _condition(pod, "Ready")
    return pod.status.phase == "Running" and ready is not None and ready.status == "True"


def test_fake_gpu_nodes_are_registered_and_ready(k8s: Any) -> None:
    nodes = {n.metadata.name: n for n in client.CoreV1Api(k8s).list_node().items}
    assert {"gpu-h100-0", "gpu-h100-1", "gpu-a800-0", "cpu-0"} <= set(nodes)
    expected = {"gpu-h100-0": "8", "gpu-h100-1": "8", "gpu-a800-0": "4"}
    for name, gpus in expected.items():
        node = nodes[name]
        assert node.status.allocatable[GPU] == gpus
        assert node.metadata.labels["nvidia.com/gpu.count"] == gpus
    assert nodes["gpu-h100-0"].metadata.labels["nvidia.com/gpu.product"] == H100
    assert nodes["gpu-a800-0"].metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A800-SXM4-80GB"
    assert GPU not in (nodes["cpu-0"].status.allocatable or {})
    for node in nodes.values():
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True", node.metadata.name


def test_gpu_deployment_is_scheduled_on_a_gpu_node_and_becomes_ready(k8s: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment(namespace, _deployment("four-gpus", 4))

    pod = wait_for(
        lambda: next((p for p in _pods(core, namespace, "four-gpus") if _is_ready(p)), None),
        timeout=60,
        message="a Ready pod of the 4-GPU deployment",
    )
    node = core.read_node(pod.spec.node_name)
    assert int(node.status.allocatable[GPU]) >= 4
    assert node.metadata.labels["nvidia.com/gpu.product"].startswith("NVIDIA-")
    assert pod.status.pod_ip, "kwok gives the pod an IP"
    wait_for(
        lambda: (
            (
                apps.read_namespaced_deployment(namespace=namespace, name="four-gpus").status.ready_replicas
                or 0
            )
            == 1
        ),
        timeout=30,
        message="the deployment to report 1 ready replica",
    )


def test_deployment_asking_too_many_gpus_stays_unschedulable(k8s: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment(namespace, _deployment("sixteen-gpus", 16))

    def unschedulable() -> client.V1Pod | None:
        for pod in _pods(core, namespace, "sixteen-gpus"):
            cond = _condition(pod, "PodScheduled")
            if cond is not None and cond.status == "False" and cond.reason == "Unschedulable":
                return pod
        return None

    pod = wait_for(unschedulable, timeout=60, message="PodScheduled=False reason Unschedulable")
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name
    message = _condition(pod, "PodScheduled").message or ""
    assert "nvidia.com/gpu" in message, message


def test_pod_ready_delay_annotation_simulates_slow_model_loading(k8s: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    delay = 3.0
    annotations = {"pod-ready.stage.kwok.x-k8s.io/delay": f"{delay:g}s"}
    apps.create_namespaced_deployment(namespace, _deployment("slow-load", 1, annotations))

    running = wait_for(
        lambda: next((p for p in _pods(core, namespace, "slow-load") if p.status.phase == "Running"), None),
        timeout=60,
        message="the slow-loading pod to be Running",
    )
    seen_running = time.monotonic()
    assert not _is_ready(running), "Ready should wait for the delay annotation"
    ready = wait_for(
        lambda: next((p for p in _pods(core, namespace, "slow-load") if _is_ready(p)), None),
        timeout=60,
        message="the slow-loading pod to become Ready",
    )
    started = running.status.start_time
    became_ready = _condition(ready, "Ready").last_transition_time
    assert (became_ready - started).total_seconds() >= delay - 1  # timestamps have one-second resolution
    assert time.monotonic() - seen_running >= 0.5


def test_deleting_an_owner_garbage_collects_its_dependents(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"k": "v"})
    )
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref]))
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(dependent_gone, timeout=60, message="the garbage collector to delete the dependent ConfigMap")


def test_deleting_a_deployment_removes_its_replicasets_and_pods(k8s: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment(namespace, _deployment("cascade", 1))
    wait_for(
        lambda: any(_is_ready(p) for p in _pods(core, namespace, "cascade")),
        timeout=60,
        message="a Ready pod of the deployment",
    )
    assert apps.list_namespaced_replica_set(namespace, label_selector="app=cascade").items

    apps.delete_namespaced_deployment("cascade", namespace, propagation_policy="Background")
    wait_for(
        lambda: (
            not apps.list_namespaced_replica_set(namespace, label_selector="app=cascade").items
            and not _pods(core, namespace, "cascade")
        ),
        timeout=60,
        message="the ReplicaSet and its pods to be garbage collected",
    )


@pytest.fixture
def cel_crd(k8s: Any) -> Any:
    """A throwaway CRD whose schema has a CEL rule; a unique group per run, deleted afterwards."""
    ext = client.ApiextensionsV1Api(k8s)
    group = f"smoke-{secrets.token_hex(3)}.telechat.test"
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "minReplicas": {"type": "integer"},
                                        "maxReplicas": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.maxReplicas",
                                            "message": "minReplicas must not exceed maxReplicas",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(body)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(f"widgets.{group}")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    wait_for(established, timeout=30, message="the CRD to be Established")
    try:
        yield group
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def test_crd_cel_rule_rejects_a_bad_object(k8s: Any, namespace: str, cel_crd: str) -> None:
    custom = client.CustomObjectsApi(k8s)

    def widget(name: str, low: int, high: int) -> dict[str, Any]:
        return {
            "apiVersion": f"{cel_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"minReplicas": low, "maxReplicas": high},
        }

    create = custom.create_namespaced_custom_object
    # Serving a new group can lag a moment behind Established: retry API errors for a while.
    wait_for(
        lambda: create(cel_crd, "v1", namespace, "widgets", widget("good", 1, 2)),
        timeout=30,
        message="the valid Widget to be accepted",
        ignore=(ApiException,),
    )
    with pytest.raises(ApiException) as caught:
        create(cel_crd, "v1", namespace, "widgets", widget("bad", 3, 1))
    assert caught.value.status == 422
    assert "minReplicas must not exceed maxReplicas" in (caught.value.body or "")


def test_server_side_apply_records_field_managers(k8s: Any, namespace: str, kubectl: Kubectl) -> None:
    manifest = f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  namespace: {namespace}
data:
  model: TeleChat2-7B
"""
    kubectl("apply", "--server-side", "--field-manager=smoke-test", "-f", "-", input=manifest, check=True)
    cm = client.CoreV1Api(k8s).read_namespaced_config_map("applied", namespace)
    entries = [(m.manager, m.operation) for m in cm.metadata.managed_fields]
    assert ("smoke-test", "Apply") in entries, entries
    owned = next(m for m in cm.metadata.managed_fields if m.manager == "smoke-test").fields_v1
    assert "f:model" in owned["f:data"]

    # A second manager taking a field it does not own is a conflict, as on any real apiserver.
    conflict = kubectl(
        "apply",
        "--server-side",
        "--field-manager=other-manager",
        "-f",
        "-",
        input=manifest.replace("TeleChat2-7B", "TeleChat2-35B"),
    )
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower(), conflict.stderr


def _run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout + proc.stderr


def test_binaries_and_server_report_their_real_versions(k8s: Any, cluster: Cluster) -> None:
    versions = _versions()
    kube, helm = versions["KUBE_VERSION"], versions["HELM_VERSION"]
    assert f"Kubernetes {kube}" in _run(tool("kube-apiserver"), "--version")
    assert f"Kubernetes {kube}" in _run(tool("kube-controller-manager"), "--version")
    assert f"Kubernetes {kube}" in _run(tool("kube-scheduler"), "--version")
    assert f'"gitVersion": "{kube}"' in _run(tool("kubectl"), "version", "--client", "-o", "json")
    assert versions["ETCD_VERSION"].lstrip("v") in _run(tool("etcd"), "--version")
    assert f'Version:"{helm}"' in _run(tool("helm"), "version")
    assert client.VersionApi(k8s).get_code().git_version == kube


# --- hack/cluster.sh itself ---------------------------------------------------------------------------


def _cluster_sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), command],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _live_processes_mentioning(path: Path) -> list[int]:
    """Pids of running (not zombie) processes whose command line names a path under ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if f"{path}/" in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def test_up_on_a_running_cluster_is_a_fast_no_op(cluster: Cluster) -> None:
    env = {**cluster.env, "TELECHAT_CLUSTER_DIR": str(cluster.dir)}
    started = time.monotonic()
    proc = _cluster_sh("up", env)
    assert proc.returncode == 0, proc.stderr
    assert "already up and healthy" in proc.stderr
    assert time.monotonic() - started < 5
    assert _cluster_sh("status", env).returncode == 0


def test_up_with_a_taken_port_fails_clearly_and_leaves_nothing(cluster: Cluster, tmp_path: Path) -> None:
    cluster_dir = tmp_path / "cluster"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**cluster.env, "TELECHAT_CLUSTER_DIR": str(cluster_dir), "TELECHAT_PORT_APISERVER": str(port)}
        proc = _cluster_sh("up", env)
    assert proc.returncode == 1
    assert f"port {port} for apiserver (TELECHAT_PORT_APISERVER) cannot be used" in proc.stderr
    assert not cluster_dir.exists()
    assert not _live_processes_mentioning(cluster_dir)


def test_a_component_dying_at_start_is_named_and_the_rest_stopped(cluster: Cluster, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"):
        (tools / name).symlink_to(tool(name))
    broken = tools / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'E0000 simulated: cannot start' >&2\nexit 1\n")
    broken.chmod(0o755)
    cluster_dir = tmp_path / "cluster"
    env = {**cluster.env, "TELECHAT_CLUSTER_DIR": str(cluster_dir), "TELECHAT_TOOLS_DIR": str(tools)}
    try:
        proc = _cluster_sh("up", env)
        assert proc.returncode == 1
        assert "ERROR: kube-apiserver: exited while waiting for /readyz" in proc.stderr
        assert f"{cluster_dir}/logs/kube-apiserver.log" in proc.stderr
        assert "simulated: cannot start" in proc.stderr
        assert "etcd ready" in proc.stderr  # etcd had started ...
        assert not _live_processes_mentioning(cluster_dir)  # ... and was stopped again
        assert _cluster_sh("status", env).returncode == 1
    finally:
        assert _cluster_sh("down", env).returncode == 0
    assert not cluster_dir.exists()
