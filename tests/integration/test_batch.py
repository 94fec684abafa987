"""TeleChatBatchJob on the real control plane, with the operator as a process (tests/integration/conftest.py).

kwok runs the Job's pods on the fake GPU nodes: Pending -> Running -> Succeeded (its pod-complete stage
completes pods owned by a Job), with exit code 0 and no termination message, so request counts are not
known here; tests/e2e/test_batch_e2e.py runs the real command and reports them.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
import yaml
from tests.helpers import Cluster, wait_for
from tests.operator_process import OperatorProcess, wait_until

GPU = "nvidia.com/gpu"
REQUEST = {
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"messages": [{"role": "user", "content": "Tell me something about large language models."}]},
}


def jsonl(*custom_ids: str, junk: int = 0) -> str:
    lines = [json.dumps({"custom_id": cid, **REQUEST}) for cid in custom_ids]
    lines += ["this line is not JSON"] * junk
    return "\n".join(lines) + "\n"


def apply_docs(cluster: Cluster, ns: str, *docs: dict[str, Any], check: bool = True) -> Any:
    return cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs), check=check)


def configmap(name: str, text: str, key: str = "requests.jsonl") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {key: text}}


def output_volume(cluster: Cluster, ns: str, claim: str = "results", modes: list[str] | None = None) -> None:
    """A PVC bound to a hostPath PV: the scheduler needs a bound claim before it places the pod."""
    pv = f"{ns}-{claim}"
    modes = modes or ["ReadWriteOnce"]
    apply_docs(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "labels": {"telechat.test/namespace": ns}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": modes,
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/tmp/telechat-test-pv/{pv}"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {
                "accessModes": modes,
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


@pytest.fixture
def volumes(cluster: Cluster, namespace: str) -> Any:
    yield
    cluster.kubectl("delete", "pv", "-l", f"telechat.test/namespace={namespace}", "--wait=false")


def batch(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "Tele-AI/TeleChat2-7B"},
        "input": {"configMap": {"name": "prompts", "key": "requests.jsonl"}},
        "output": {"pvc": {"claimName": "results", "path": f"runs/{name}.jsonl"}},
    }
    base.update(spec)
    return {
        "apiVersion": "telechat.ai/v1alpha1",
        "kind": "TeleChatBatchJob",
        "metadata": {"name": name},
        "spec": base,
    }


def get(cluster: Cluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", "-n", ns, kind, name, "-o", "json")
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def wait_phase(cluster: Cluster, ns: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, ns, "tcb", name)
        return obj if ((obj or {}).get("status") or {}).get("phase") == phase else None

    result: dict[str, Any] = wait_for(check, timeout=timeout, interval=0.3, message=f"{name} phase {phase}")
    return result


def events(cluster: Cluster, ns: str, name: str) -> list[tuple[str, str, str]]:
    proc = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json", check=True
    )
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(proc.stdout)["items"]]


def jobs(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "jobs", "-n", ns, "-o", "json", check=True).stdout
    )["items"]
    return items


def test_batch_job_runs_to_succeeded_with_the_right_gpus(
    cluster: Cluster, namespace: str, operator: OperatorProcess, volumes: Any
) -> None:
    output_volume(cluster, namespace, modes=["ReadWriteMany"])
    spec = {
        "model": {"name": "Tele-AI/TeleChat2-115B"},
        "engine": {"dtype": "float16"},
        "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        "parallelism": 2,
        "ttlSecondsAfterFinished": 3,
    }
    apply_docs(
        cluster, namespace, configmap("prompts", jsonl("a", "b", "c", junk=1)), batch("nightly", **spec)
    )

    job = wait_for(lambda: get(cluster, namespace, "job", "nightly-batch"), timeout=90, message="the Job")
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["completionMode"]) == (
        2,
        2,
        "Indexed",
    )
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    # TeleChat2-115B: tensor parallel 4 from the catalog, on the H100 nodes.
    assert container["resources"]["requests"][GPU] == "4" and container["resources"]["limits"][GPU] == "4"
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod_spec["restartPolicy"] == "Never"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("TeleChatBatchJob", "nightly", True)
    assert get(cluster, namespace, "configmap", "nightly-batch-config") is not None

    done = wait_phase(cluster, namespace, "nightly", "Succeeded")
    status = done["status"]
    assert status["requests"]["total"] == 4, "counted from the ConfigMap before the Job was created"
    assert status["gpusPerPod"] == 4 and status["gpus"] == 8
    assert status["output"] == "pvc://results/runs/nightly.jsonl"
    assert status["jobName"] == "nightly-batch" and status["startTime"] and status["completionTime"]
    assert condition(done, "Complete")["status"] == "True"
    assert condition(done, "Failed")["status"] == "False"
    assert "1 of 4 requests are malformed" in condition(done, "SpecValid")["message"]
    reasons = {(t, r) for t, r, _ in events(cluster, namespace, "nightly")}
    assert {("Normal", "JobCreated"), ("Normal", "Succeeded")} <= reasons

    columns = cluster.kubectl("get", "tcb", "nightly", "-n", namespace, check=True).stdout
    assert columns.split("\n")[0].split() == ["NAME", "MODEL", "PHASE", "DONE", "FAILED", "AGE"]
    assert "Tele-AI/TeleChat2-115B" in columns and "Succeeded" in columns

    # The TTL removes the Job and its pods; the outcome stays and the batch is not run again.
    wait_for(
        lambda: get(cluster, namespace, "job", "nightly-batch") is None, timeout=30, message="TTL deletion"
    )
    version = get(cluster, namespace, "tcb", "nightly")["metadata"]["resourceVersion"]  # type: ignore[index]
    wait_until(12)  # a couple of resyncs (5 s)
    after = get(cluster, namespace, "tcb", "nightly")
    assert after is not None and after["metadata"]["resourceVersion"] == version, "an idle resync wrote"
    assert after["status"]["phase"] == "Succeeded"
    assert jobs(cluster, namespace) == []


def test_input_that_is_not_jsonl_creates_no_job_until_it_is_fixed(
    cluster: Cluster, namespace: str, operator: OperatorProcess, volumes: Any
) -> None:
    output_volume(cluster, namespace)
    pretty = json.dumps([{"custom_id": "a", **REQUEST}], indent=2)
    apply_docs(cluster, namespace, configmap("prompts", pretty), batch("bad"))

    def refused() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "tcb", "bad")
        return obj if condition(obj, "SpecValid").get("reason") == "InputNotJSONL" else None

    obj = wait_for(refused, timeout=30, message="SpecValid=False InputNotJSONL")
    assert obj["status"]["phase"] == "Invalid"
    assert "is not JSONL" in condition(obj, "SpecValid")["message"]
    warnings = [(r, m) for t, r, m in events(cluster, namespace, "bad") if t == "Warning"]
    assert any(r == "InputNotJSONL" and "is not JSONL" in m for r, m in warnings), warnings
    wait_until(3)
    assert jobs(cluster, namespace) == [], "no Job (and so no GPU) for input that is not JSONL"

    apply_docs(cluster, namespace, configmap("prompts", jsonl("a", "b")))
    # The operator looks again (pre-flight retry): now it creates the Job.
    wait_for(lambda: get(cluster, namespace, "job", "bad-batch"), timeout=40, message="the Job after the fix")
    fixed = wait_phase(cluster, namespace, "bad", "Succeeded")
    assert condition(fixed, "SpecValid")["status"] == "True"


@pytest.mark.parametrize(
    ("case", "reason", "expected"),
    [
        ("no-configmap", "InputNotFound", "ConfigMap 'prompts' not found"),
        ("no-key", "InputNotFound", "has no key 'requests.jsonl' (keys: other.jsonl)"),
        ("empty", "InputNotJSONL", "holds no requests"),
        ("no-output", "OutputNotFound", "PersistentVolumeClaim 'results' not found"),
        ("read-only-output", "OutputNotWritable", "ReadOnlyMany"),
    ],
)
def test_refused_before_any_gpu_is_requested(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
    volumes: Any,
    case: str,
    reason: str,
    expected: str,
) -> None:
    docs: list[dict[str, Any]] = []
    if case == "no-key":
        docs.append(configmap("prompts", jsonl("a"), key="other.jsonl"))
    elif case == "empty":
        docs.append(configmap("prompts", "\n"))
    elif case != "no-configmap":
        docs.append(configmap("prompts", jsonl("a")))
    if case == "read-only-output":
        output_volume(cluster, namespace, modes=["ReadOnlyMany"])
    elif case != "no-output":
        output_volume(cluster, namespace)
    name = f"r-{secrets.token_hex(2)}"
    apply_docs(cluster, namespace, *docs, batch(name))

    def refused() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "tcb", name)
        return obj if condition(obj, "SpecValid").get("reason") == reason else None

    obj = wait_for(refused, timeout=30, message=f"SpecValid=False {reason}")
    assert expected in condition(obj, "SpecValid")["message"]
    assert condition(obj, "Progressing")["status"] == "False"
    assert any(t == "Warning" and r == reason for t, r, _ in events(cluster, namespace, name))
    assert jobs(cluster, namespace) == []
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json", check=True).stdout)[
        "items"
    ]
    assert pods == []


def test_a_job_that_cannot_finish_in_time_fails_with_the_reason(
    cluster: Cluster, namespace: str, operator: OperatorProcess, volumes: Any
) -> None:
    output_volume(cluster, namespace)
    # No node has this label: the pod waits (and says why) until the deadline fails the Job.
    spec = {"scheduling": {"nodeSelector": {"telechat.test/nowhere": "true"}}, "activeDeadlineSeconds": 8}
    apply_docs(cluster, namespace, configmap("prompts", jsonl("a")), batch("late", **spec))

    def waiting() -> dict[str, Any] | None:
        obj = get(cluster, namespace, "tcb", "late")
        return obj if condition(obj, "Progressing").get("reason") == "Unschedulable" else None

    obj = wait_for(waiting, timeout=30, message="Progressing reason Unschedulable")
    assert obj["status"]["phase"] == "Pending"
    failed = wait_phase(cluster, namespace, "late", "Failed", timeout=60)
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    assert failed["status"]["message"]
    assert any(t == "Warning" and r == "DeadlineExceeded" for t, r, _ in events(cluster, namespace, "late"))


def test_admission_refuses_what_the_operator_renders_itself(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    bad = batch("flags", engine={"extraArgs": ["--output-file=/tmp/x.jsonl"]})
    proc = apply_docs(cluster, namespace, bad, check=False)
    assert proc.returncode != 0 and "rendered by the operator from spec.input and spec.output" in proc.stderr
    both = batch(
        "both", input={"configMap": {"name": "p", "key": "k"}, "pvc": {"claimName": "d", "path": "a"}}
    )
    proc = apply_docs(cluster, namespace, both, check=False)
    assert proc.returncode != 0 and "set exactly one of input.configMap, input.pvc" in proc.stderr
    long_name = batch("x" * 51)
    proc = apply_docs(cluster, namespace, long_name, check=False)
    assert proc.returncode != 0 and "at most 50 characters" in proc.stderr


def test_deleting_the_batch_removes_its_job_and_configmap(
    cluster: Cluster, namespace: str, operator: OperatorProcess, volumes: Any
) -> None:
    output_volume(cluster, namespace)
    # Pods wait for a node that does not exist, so the Job is still there when the batch is deleted.
    spec = {"scheduling": {"nodeSelector": {"telechat.test/nowhere": "true"}}}
    apply_docs(cluster, namespace, configmap("prompts", jsonl("a")), batch("gone", **spec))
    wait_for(lambda: get(cluster, namespace, "job", "gone-batch"), timeout=30, message="the Job")
    cluster.kubectl("delete", "tcb", "gone", "-n", namespace, check=True)
    wait_for(
        lambda: (
            get(cluster, namespace, "job", "gone-batch") is None
            and get(cluster, namespace, "configmap", "gone-batch-config") is None
        ),
        timeout=60,
        message="garbage collection of the Job and ConfigMap",
    )
