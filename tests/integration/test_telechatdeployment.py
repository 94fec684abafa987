"""TeleChatDeployment on the real control plane: children, status, scale, rollouts, drift, GC, admission."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.helpers import Cluster, wait_for
from tests.integration.tcd import apply, condition, events, get, pods, wait_condition
from tests.operator_process import OperatorProcess, wait_until

SMALL: dict[str, Any] = {"model": {"name": "Tele-AI/TeleChat2-7B"}, "resources": {"cpu": 2, "memory": "8Gi"}}


@pytest.fixture(autouse=True)
def _operator(operator: OperatorProcess) -> OperatorProcess:
    return operator


def gpu_limit(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])


def test_apply_creates_children_and_becomes_ready(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "tc", SMALL)
    tcd = wait_condition(cluster, namespace, "tc", "Ready", "True")
    uid = tcd["metadata"]["uid"]
    for kind, child in (("configmap", "tc-engine"), ("deployment", "tc"), ("service", "tc")):
        obj = get(cluster, namespace, kind, child)
        assert obj is not None, f"{kind}/{child} missing"
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True
        managers = {m["manager"]: m["operation"] for m in obj["metadata"]["managedFields"]}
        assert managers.get("telechat-operator") == "Apply", managers
    status = tcd["status"]
    assert status["observedGeneration"] == tcd["metadata"]["generation"]
    assert status["phase"] == "Ready" and status["ready"] == "1/1"
    assert status["endpoint"] == f"http://tc.{namespace}.svc:8000/v1"
    assert status["modelId"] == "Tele-AI/TeleChat2-7B" and status["gpusPerReplica"] == 1
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded", "SpecValid"}
    # kubectl wait works on the condition, as users and CI pipelines use it.
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "tcd/tc", "--timeout=10s", check=True)
    assert any(e["reason"] == "ModelServing" for e in events(cluster, namespace, "tc"))
    printed = cluster.kubectl("get", "tcd", "-n", namespace, check=True).stdout
    assert "Tele-AI/TeleChat2-7B" in printed and "1/1" in printed and "Ready" in printed


def test_scale_subresource(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "tc", SMALL)
    wait_condition(cluster, namespace, "tc", "Ready", "True")
    cluster.kubectl("scale", "-n", namespace, "tcd/tc", "--replicas=2", check=True)
    tcd = wait_for(
        lambda: (t := get(cluster, namespace, "tcd", "tc")) and t["status"].get("ready") == "2/2" and t,
        timeout=60,
        message="2/2 ready after kubectl scale",
    )
    assert tcd["status"]["gpus"] == 2
    assert get(cluster, namespace, "deployment", "tc")["spec"]["replicas"] == 2  # type: ignore[index]
    scale = json.loads(
        cluster.kubectl(
            "get",
            "--raw",
            f"/apis/telechat.ai/v1alpha1/namespaces/{namespace}/telechatdeployments/tc/scale",
            check=True,
        ).stdout
    )
    assert scale["status"]["replicas"] == 2 and "app.kubernetes.io/instance=tc" in scale["status"]["selector"]


def test_tensor_parallel_change_rolls_pods(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "tc", SMALL)
    wait_condition(cluster, namespace, "tc", "Ready", "True")
    before = {p["metadata"]["name"] for p in pods(cluster, namespace, "tc")}
    apply(cluster, namespace, "tc", {**SMALL, "engine": {"tensorParallelSize": 2}})
    wait_for(
        lambda: (
            (t := get(cluster, namespace, "tcd", "tc"))
            and t["status"].get("tensorParallelSize") == 2
            and condition(t, "Ready").get("status") == "True"
            and t["status"]["observedGeneration"] == 2
        ),
        timeout=90,
        message="ready again with tensor parallel 2",
    )
    dep = get(cluster, namespace, "deployment", "tc")
    assert dep is not None and gpu_limit(dep) == "2"
    engine = get(cluster, namespace, "configmap", "tc-engine")
    assert engine is not None and "tensor-parallel-size: 2" in engine["data"]["vllm.yaml"]
    after = wait_for(
        lambda: [p for p in pods(cluster, namespace, "tc") if not p["metadata"].get("deletionTimestamp")],
        message="running pods",
    )
    assert {p["metadata"]["name"] for p in after}.isdisjoint(before)


def test_drift_is_repaired(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "tc", SMALL)
    wait_condition(cluster, namespace, "tc", "Ready", "True")
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "deployment",
        "tc",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "hacked:latest"}]',
        check=True,
    )
    cluster.kubectl("delete", "-n", namespace, "configmap", "tc-engine", check=True)
    cluster.kubectl("delete", "-n", namespace, "service", "tc", check=True)
    wait_for(
        lambda: (
            (d := get(cluster, namespace, "deployment", "tc"))
            and d["spec"]["template"]["spec"]["containers"][0]["image"] != "hacked:latest"
        ),
        timeout=30,
        message="image restored",
    )
    wait_for(
        lambda: get(cluster, namespace, "configmap", "tc-engine"), timeout=30, message="ConfigMap recreated"
    )
    wait_for(lambda: get(cluster, namespace, "service", "tc"), timeout=30, message="Service recreated")


def test_idle_resync_writes_nothing(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "tc", SMALL)
    wait_condition(cluster, namespace, "tc", "Ready", "True")
    wait_until(2)  # let the last watch events settle

    def versions() -> dict[str, str]:
        out = {}
        for kind, name in (
            ("tcd", "tc"),
            ("configmap", "tc-engine"),
            ("deployment", "tc"),
            ("service", "tc"),
        ):
            obj = get(cluster, namespace, kind, name)
            assert obj is not None
            out[kind] = obj["metadata"]["resourceVersion"]
        return out

    first = versions()
    count = len(events(cluster, namespace, "tc"))
    wait_until(11)  # two resync periods of the test operator (5 s)
    assert versions() == first
    assert len(events(cluster, namespace, "tc")) == count


def test_delete_removes_children(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "tc", {**SMALL, "model": {**SMALL["model"], "cache": {"size": "10Gi"}}})
    wait_for(lambda: get(cluster, namespace, "pvc", "tc-model-cache"), message="cache PVC")
    cluster.kubectl("delete", "-n", namespace, "tcd", "tc", "--wait=true", check=True)
    for kind, name in (("deployment", "tc"), ("configmap", "tc-engine"), ("service", "tc")):

        def gone(k: str = kind, n: str = name) -> bool:
            return get(cluster, namespace, k, n) is None

        wait_for(
            gone,
            timeout=60,
            message=f"{kind}/{name} garbage-collected",
        )
    # A PVC in use is protected by its finalizer; it is gone or going.
    wait_for(
        lambda: (
            (p := get(cluster, namespace, "pvc", "tc-model-cache")) is None
            or p["metadata"].get("deletionTimestamp")
        ),
        timeout=60,
        message="cache PVC deleted",
    )


def test_replica_that_cannot_fit_says_why(cluster: Cluster, namespace: str) -> None:
    spec = {
        "model": {"name": "Tele-AI/TeleChat2-115B"},
        "engine": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
    }
    apply(cluster, namespace, "big", spec)
    tcd = wait_condition(cluster, namespace, "big", "Degraded", "True", reason="Unschedulable")
    message = condition(tcd, "Degraded")["message"]
    assert "Insufficient nvidia.com/gpu" in message
    assert "needs 16 nvidia.com/gpu" in message and "largest node offers 8" in message
    assert tcd["status"]["phase"] == "Pending"
    assert any(
        e["type"] == "Warning" and e["reason"] == "Unschedulable" for e in events(cluster, namespace, "big")
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"model": {"name": "Tele-AI/TeleChat2-115B"}, "engine": {"tensorParallelSize": 3}},
            "3 does not divide Tele-AI/TeleChat2-115B's 64 attention heads and 8 KV heads",
        ),
        (
            {
                "model": {"name": "TeleChat/TeleChat2-115B"},
                "engine": {"maxModelLen": 32768, "ropeScaling": {"type": "dynamic", "factor": 3}},
            },
            "8192 x rope factor 3 = 24576",
        ),
        (
            {"model": {"name": "Tele-AI/TeleChat2-7B"}, "engine": {"pipelineParallelSize": 40}},
            "exceeds Tele-AI/TeleChat2-7B's 30 layers",
        ),
        (
            {"model": {"name": "Tele-AI/TeleChat2-7B"}, "engine": {"extraArgs": ["--dtype=half"]}},
            "extraArgs must not set flags",
        ),
        (
            {"model": {"name": "Tele-AI/TeleChat2-7B"}, "engine": {"dtype": "float64"}},
            'Unsupported value: "float64"',
        ),
        ({"model": {"name": "Tele-AI/TeleChat2-7B"}, "replicas": -1}, "should be greater than or equal to 0"),
        (
            {"model": {"name": "Tele-AI/TeleChat2-7B", "pvc": {"claimName": "w"}, "cache": {"size": "1Gi"}}},
            "model.pvc (weights on a volume) and model.cache (download cache) are exclusive",
        ),
    ],
    ids=["tp-heads", "context", "pp-layers", "owned-flag-cel", "dtype-enum", "replicas", "pvc-cache-cel"],
)
def test_invalid_resources_are_rejected_at_apply(
    cluster: Cluster, namespace: str, spec: dict[str, Any], message: str
) -> None:
    from tests.integration.tcd import manifest

    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("bad", spec))
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr
    assert get(cluster, namespace, "tcd", "bad") is None


def test_invalid_name_is_rejected(cluster: Cluster, namespace: str) -> None:
    from tests.integration.tcd import manifest

    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("9-starts-with-digit", SMALL))
    assert proc.returncode != 0 and "DNS-1035" in proc.stderr


def test_webhook_warns_without_refusing(cluster: Cluster, namespace: str) -> None:
    from tests.integration.tcd import manifest

    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("warn", SMALL))
    assert proc.returncode == 0, proc.stderr
    assert "spec.model.cache is not set" in proc.stderr


def test_missing_secret_then_created(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, "sec", {**SMALL, "apiKeySecretRef": {"name": "api-key", "key": "key"}})
    tcd = wait_condition(cluster, namespace, "sec", "SpecValid", "False", reason="SecretNotFound")
    assert "Secret 'api-key' not found" in condition(tcd, "SpecValid")["message"]
    assert get(cluster, namespace, "deployment", "sec") is None  # nothing requested before the fix
    assert any(e["reason"] == "SecretNotFound" for e in events(cluster, namespace, "sec"))
    cluster.kubectl(
        "create", "secret", "generic", "api-key", "-n", namespace, "--from-literal=key=s3cret", check=True
    )
    wait_condition(cluster, namespace, "sec", "Ready", "True", timeout=60)
    dep = get(cluster, namespace, "deployment", "sec")
    assert dep is not None
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "api-key", "key": "key"}
    tcd_text = json.dumps(get(cluster, namespace, "tcd", "sec")) + json.dumps(
        get(cluster, namespace, "configmap", "sec-engine")
    )
    assert "s3cret" not in tcd_text
