"""Pre-flight checks and the batch reconciler against an in-memory API (no cluster): what is refused before
any GPU is requested, that the Job is created once, and that nothing is written when nothing changed."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
from typing import Any

import pytest

from telechat_operator.api import constants as c
from telechat_operator.batch.preflight import preflight
from telechat_operator.batch.reconciler import BatchReconciler
from telechat_operator.batch.runner import ShardSummary
from telechat_operator.batch.spec import TeleChatBatchJobSpec
from telechat_operator.config import OperatorConfig
from telechat_operator.controller.cache import ObservedState
from telechat_operator.kube import Kube
from telechat_operator.validation import parse_as

NS = "ns1"
GOOD_LINE = json.dumps(
    {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}
)


class FakeKube:
    """Objects by (kind, name); counts reads and writes like telechat_operator.kube.Kube."""

    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects or []}
        self.reads = 0
        self.writes = 0
        self.applied: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.status_patches: list[dict[str, Any]] = []
        self._rv = itertools.count(100)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        obj = self.objects.get((kind, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        self.applied.append(obj)
        stored = copy.deepcopy(obj)
        stored["metadata"].update(uid=f"uid-{obj['metadata']['name']}", resourceVersion=str(next(self._rv)))
        self.objects[(obj["kind"], obj["metadata"]["name"])] = stored
        return copy.deepcopy(stored)

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.writes += 1
        self.status_patches.append(status)
        body = self.objects[(kind, name)]
        merged = {k: v for k, v in {**(body.get("status") or {}), **status}.items() if v is not None}
        body["status"] = merged
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(body)

    async def post_event(self, event: dict[str, Any]) -> None:
        self.writes += 1
        self.events.append(event)


class Index(dict[Any, list[dict[str, Any]]]):
    """Stands in for a kopf index: key -> store of objects."""


def batch_body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.BATCH_KIND,
        "metadata": {
            "name": "b",
            "namespace": NS,
            "uid": "owner-uid",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": spec,
        "status": status or {},
    }


SPEC: dict[str, Any] = {
    "model": {"name": "Tele-AI/TeleChat2-7B"},
    "input": {"configMap": {"name": "prompts", "key": "in.jsonl"}},
    "output": {"pvc": {"claimName": "results", "path": "o.jsonl"}},
}


def configmap(data: dict[str, str] | None = None, binary: dict[str, str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "ConfigMap", "metadata": {"name": "prompts"}}
    if data is not None:
        obj["data"] = data
    if binary is not None:
        obj["binaryData"] = binary
    return obj


def pvc(name: str, modes: list[str] | None = None, phase: str = "Bound") -> dict[str, Any]:
    return {
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": modes or ["ReadWriteOnce"]},
        "status": {"phase": phase},
    }


READY = [configmap({"in.jsonl": "\n".join([GOOD_LINE, "not json", GOOD_LINE])}), pvc("results")]


def spec_of(**changes: Any) -> TeleChatBatchJobSpec:
    return parse_as(TeleChatBatchJobSpec, {**SPEC, **changes})


PREFLIGHT: list[tuple[str, dict[str, Any], list[dict[str, Any]], str, str]] = [
    ("input-configmap-missing", {}, [pvc("results")], "InputNotFound", "ConfigMap 'prompts' not found"),
    (
        "input-key-missing",
        {},
        [configmap({"other": "x"}), pvc("results")],
        "InputNotFound",
        "no key 'in.jsonl' (keys: other)",
    ),
    (
        "input-empty",
        {},
        [configmap({"in.jsonl": "\n\n"}), pvc("results")],
        "InputNotJSONL",
        "holds no requests",
    ),
    (
        "input-json-array",
        {},
        [configmap({"in.jsonl": json.dumps([json.loads(GOOD_LINE)], indent=2)}), pvc("results")],
        "InputNotJSONL",
        "is not JSONL",
    ),
    (
        "input-binary-not-utf8",
        {},
        [configmap(binary={"in.jsonl": base64.b64encode(b"\xff\xfe\x00").decode()}), pvc("results")],
        "InputNotJSONL",
        "not UTF-8",
    ),
    ("output-missing", {}, [READY[0]], "OutputNotFound", "PersistentVolumeClaim 'results' not found"),
    (
        "output-read-only",
        {},
        [READY[0], pvc("results", ["ReadOnlyMany"])],
        "OutputNotWritable",
        "ReadOnlyMany",
    ),
    ("output-lost", {}, [READY[0], pvc("results", phase="Lost")], "OutputNotWritable", "lost its volume"),
    (
        "output-rwop-sharded",
        {"parallelism": 2},
        [READY[0], pvc("results", ["ReadWriteOncePod"])],
        "OutputNotWritable",
        "ReadWriteOncePod",
    ),
    (
        "input-pvc-missing",
        {"input": {"pvc": {"claimName": "data", "path": "a.jsonl"}}},
        [pvc("results")],
        "InputNotFound",
        "PersistentVolumeClaim 'data' not found",
    ),
    (
        "model-pvc-missing",
        {"model": {"name": "Tele-AI/TeleChat2-7B", "pvc": {"claimName": "weights"}}},
        READY,
        "VolumeNotFound",
        "spec.model.pvc",
    ),
    (
        "hf-secret-missing",
        {"model": {"name": "Tele-AI/TeleChat2-7B", "hfTokenSecretRef": {"name": "hf"}}},
        READY,
        "SecretNotFound",
        "Secret 'hf' not found",
    ),
]


@pytest.mark.parametrize(
    ("case", "changes", "objects", "reason", "expected"), PREFLIGHT, ids=[p[0] for p in PREFLIGHT]
)
def test_preflight_refusals(
    case: str, changes: dict[str, Any], objects: list[dict[str, Any]], reason: str, expected: str
) -> None:
    result = asyncio.run(preflight(FakeKube(objects), NS, spec_of(**changes)))  # type: ignore[arg-type]
    assert result.reason == reason
    assert any(expected in e for e in result.errors), result.errors


def test_preflight_passes_with_warnings_for_bad_lines_and_duplicate_ids() -> None:
    kube = FakeKube([*READY, pvc("results", ["ReadWriteOnce"])])
    result = asyncio.run(preflight(kube, NS, spec_of(parallelism=2)))  # type: ignore[arg-type]
    assert result.errors == [] and result.total == 3
    joined = " ".join(result.warnings)
    assert "1 of 3 requests are malformed" in joined
    assert "custom_id values used more than once: 'a'" in joined
    assert "not ReadWriteMany" in joined


def test_preflight_reads_binary_data() -> None:
    data = base64.b64encode(GOOD_LINE.encode()).decode()
    kube = FakeKube([configmap(binary={"in.jsonl": data}), pvc("results")])
    result = asyncio.run(preflight(kube, NS, spec_of()))  # type: ignore[arg-type]
    assert result.errors == [] and result.total == 1


# --- the reconciler ------------------------------------------------------------------------------------


class Harness:
    def __init__(self, objects: list[dict[str, Any]], spec: dict[str, Any] = SPEC) -> None:
        self.kube = FakeKube([*objects, batch_body(spec)])
        self.indices: dict[str, Index] = {name: Index() for name in ("owners", "cms", "pvcs", "jobs", "pods")}
        self.state = ObservedState(self.indices, "owners", ("cms", "pvcs", "jobs"), "pods")
        self.reconciler = BatchReconciler(self.kube, OperatorConfig(), self.state)  # type: ignore[arg-type]
        self.sync_owner()

    def sync_owner(self) -> None:
        self.indices["owners"][(NS, "b")] = [copy.deepcopy(self.kube.objects[(c.BATCH_KIND, "b")])]

    def reconcile(self) -> Any:
        outcome = asyncio.run(self.reconciler.reconcile(NS, "b"))
        self.sync_owner()
        return outcome

    @property
    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.kube.objects[(c.BATCH_KIND, "b")]["status"]
        return result

    def condition(self, kind: str) -> dict[str, Any]:
        return next(x for x in self.status["conditions"] if x["type"] == kind)

    def set_job(self, status: dict[str, Any] | None) -> None:
        """What the watch would show: the Job as created, with the Job controller's status."""
        if status is None:
            self.indices["jobs"].pop((NS, "b"), None)
            self.kube.objects.pop(("Job", "b-batch"), None)
            self.state._written.clear()
            return
        job = copy.deepcopy(self.kube.objects[("Job", "b-batch")])
        job["status"] = status
        job["metadata"]["resourceVersion"] = "999"
        self.indices["jobs"][(NS, "b")] = [job]

    def set_pods(self, pods: list[dict[str, Any]]) -> None:
        self.indices["pods"][(NS, "b", "batch")] = pods


def summary_pod(ok: int, total: int) -> dict[str, Any]:
    message = ShardSummary(
        0, 1, total, total, ok, total - ok, total - ok, "/batch/output/o.jsonl", True
    ).to_json()
    terminated = {"exitCode": 0, "message": message, "finishedAt": "2026-11-24T11:00:00Z"}
    return {
        "metadata": {"name": "b-batch-0-x", "annotations": {"batch.kubernetes.io/job-completion-index": "0"}},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "vllm", "state": {"terminated": terminated}}],
        },
    }


def test_bad_input_creates_nothing_and_says_why() -> None:
    h = Harness([configmap({"in.jsonl": "[1, 2, 3]"}), pvc("results")])
    outcome = h.reconcile()
    assert h.kube.applied == []
    assert h.status["phase"] == "Invalid"
    assert (
        h.condition("SpecValid")["status"] == "False"
        and h.condition("SpecValid")["reason"] == "InputNotJSONL"
    )
    assert outcome.requeue_after == 15.0
    (event,) = h.kube.events
    assert (event["type"], event["reason"]) == ("Warning", "InputNotJSONL")
    # Looked at again with the same bad input: no new write, no new Event.
    writes = h.kube.writes
    h.reconcile()
    assert h.kube.writes == writes


def test_lifecycle_creates_the_job_once_and_reports_counts() -> None:
    h = Harness(READY)
    h.reconcile()
    assert [o["kind"] for o in h.kube.applied] == ["ConfigMap", "Job"]
    assert h.status["phase"] == "Pending"
    assert h.status["jobUid"] == "uid-b-batch" and h.status["jobName"] == "b-batch"
    assert h.status["requests"] == {"total": 3} and h.status["progress"] == "0/3"
    assert h.status["output"] == "pvc://results/o.jsonl"
    assert h.status["gpus"] == 1 and h.status["modelId"] == "Tele-AI/TeleChat2-7B"
    assert [e["reason"] for e in h.kube.events] == ["JobCreated"]
    assert "1 of 3 requests are malformed" in h.condition("SpecValid")["message"]

    # The watch catches up with the Job; reconciling again writes nothing and reads nothing.
    h.set_job({"active": 1, "startTime": "2026-11-24T10:00:00Z"})
    h.reconcile()  # Pending -> startTime recorded
    before = (h.kube.writes, h.kube.reads)
    h.reconcile()
    assert (h.kube.writes, h.kube.reads) == before
    assert "1 of 3 requests are malformed" in h.condition("SpecValid")["message"], "pre-flight notes are kept"

    h.set_job(
        {
            "succeeded": 1,
            "startTime": "2026-11-24T10:00:00Z",
            "completionTime": "2026-11-24T11:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    )
    h.set_pods([summary_pod(ok=2, total=3)])
    h.reconcile()
    assert h.status["phase"] == "Succeeded"
    assert h.status["requests"] == {"total": 3, "succeeded": 2, "failed": 1, "invalid": 1}
    assert h.status["progress"] == "3/3"
    assert h.status["completionTime"] == "2026-11-24T11:00:00Z"
    assert h.kube.events[-1]["reason"] == "Succeeded" and h.kube.events[-1]["type"] == "Normal"

    # The TTL deletes the Job: the outcome stays, nothing is created again, no API call at all.
    h.set_job(None)
    h.set_pods([])
    before = (h.kube.writes, h.kube.reads)
    h.reconcile()
    assert (h.kube.writes, h.kube.reads) == before
    assert h.status["phase"] == "Succeeded"
    assert [o["kind"] for o in h.kube.applied] == ["ConfigMap", "Job"]


def test_job_deleted_mid_run_is_not_run_twice() -> None:
    h = Harness(READY)
    h.reconcile()
    h.set_job(None)
    h.reconcile()
    assert [o["kind"] for o in h.kube.applied] == ["ConfigMap", "Job"]
    assert h.status["phase"] == "Failed"
    assert h.condition("Failed")["reason"] == "JobDeleted"
    assert h.kube.events[-1]["type"] == "Warning"


def test_input_that_appears_later_starts_the_batch() -> None:
    h = Harness([pvc("results")])
    h.reconcile()
    assert h.status["phase"] == "Invalid" and h.kube.applied == []
    h.kube.objects[("ConfigMap", "prompts")] = READY[0]
    h.reconcile()
    assert [o["kind"] for o in h.kube.applied] == ["ConfigMap", "Job"]
    assert h.condition("SpecValid")["status"] == "True"
    assert [e["reason"] for e in h.kube.events] == ["InputNotFound", "JobCreated", "Valid"]


def test_gone_resource_is_forgotten() -> None:
    h = Harness(READY)
    h.indices["owners"].clear()
    outcome = asyncio.run(h.reconciler.reconcile(NS, "b"))
    assert outcome.applied == 0 and h.kube.writes == 0


def test_fake_kube_has_kubes_methods() -> None:
    for name in ("get", "apply", "patch_status", "post_event"):
        assert callable(getattr(Kube, name)) and callable(getattr(FakeKube, name))
