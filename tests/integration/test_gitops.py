"""GitOps behaviour on the real control plane: applying an unchanged resource writes nothing, no defaults
are written back into the spec, a reconciled resource shows no diff, `render` prints what the operator
applies, and the documented Argo CD health check reads the operator's real status correctly."""

from __future__ import annotations

import copy
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import ROOT, Cluster, wait_for
from tests.operator_process import OperatorProcess, install_crds

GITOPS = ROOT / "examples" / "gitops"
DOC = ROOT / "docs" / "gitops.md"
HEALTH_KEY = "resource.customizations.health.telechat.ai_TeleChatDeployment"


# --- helpers ---------------------------------------------------------------------------------------------


def kustomized(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(GITOPS), check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def resources_in(cluster: Cluster, namespace: str, suffix: str = "") -> list[dict[str, Any]]:
    """The example's TeleChatDeployments, moved to ``namespace`` (names optionally suffixed)."""
    docs = []
    for doc in kustomized(cluster):
        if doc["kind"] != "TeleChatDeployment":
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        doc["metadata"]["name"] += suffix
        docs.append(doc)
    return docs


def dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def get(cluster: Cluster, namespace: str, name: str, kind: str = "telechatdeployment") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        cluster.kubectl(
            "get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields", check=True
        ).stdout
    )
    return data


def reconciled(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get(cluster, namespace, name)
    status = obj.get("status") or {}
    if status.get("observedGeneration") == obj["metadata"]["generation"] and status.get("conditions"):
        return obj
    return None


def health_lua() -> str:
    """The Argo CD health check exactly as docs/gitops.md documents it."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    for block in blocks:
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and HEALTH_KEY in (doc.get("data") or {}):
            return str(doc["data"][HEALTH_KEY])
    raise AssertionError(f"no argocd-cm block with {HEALTH_KEY} in {DOC}")


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the documented Lua the way Argo CD does: Lua 5.1, the object as the global ``obj``."""
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa (dev extra) runs the Argo CD Lua health check")
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([to_lua(v) for v in value])
        return value

    runtime.globals().obj = to_lua(obj)
    result = runtime.execute(health_lua())
    return str(result["status"]), str(result["message"] or "")


@pytest.fixture
def plain_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace no operator watches (the operator fixture watches t-*): nothing but the test writes."""
    # Tests on this namespace run without the operator fixture, which is what installs the CRDs otherwise.
    install_crds(cluster)
    name = f"gitops-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name, check=True)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


# --- tests ---------------------------------------------------------------------------------------------


def test_example_kustomization_builds_and_renders(cluster: Cluster) -> None:
    docs = kustomized(cluster)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "llm-serving"),
        ("TeleChatDeployment", "telechat2-35b"),
        ("TeleChatDeployment", "telechat2-7b"),
    ]
    for doc in docs[1:]:
        assert doc["metadata"]["namespace"] == "llm-serving"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "telechat"
    proc = subprocess.run(
        [sys.executable, "-m", "telechat_operator.cli", "render", "-f", "-"],
        input=dump(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"the example should render without notes: {proc.stderr}"
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(proc.stdout) if d)
    assert kinds == sorted(["ConfigMap", "Service", "Deployment", "PersistentVolumeClaim"] * 2)


@pytest.mark.parametrize("mode", ["server-side", "client-side"])
def test_applying_an_unchanged_resource_writes_nothing(
    cluster: Cluster, plain_namespace: str, mode: str
) -> None:
    docs = resources_in(cluster, plain_namespace)
    args = ["apply", "--server-side", "--field-manager=gitops-test"] if mode == "server-side" else ["apply"]
    cluster.kubectl(*args, "-f", "-", input=dump(docs), check=True)
    before = {d["metadata"]["name"]: get(cluster, plain_namespace, d["metadata"]["name"]) for d in docs}

    second = cluster.kubectl(*args, "-f", "-", input=dump(docs), check=True)
    if mode == "client-side":
        assert second.stdout.count("unchanged") == len(docs), second.stdout
    for doc in docs:
        name = doc["metadata"]["name"]
        after = get(cluster, plain_namespace, name)
        assert after["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"], name
        assert after["metadata"]["generation"] == 1
        assert after["spec"] == doc["spec"], "the stored spec must be exactly what was applied"
    diff = cluster.kubectl(
        "diff",
        *(["--server-side", "--field-manager=gitops-test"] if mode == "server-side" else []),
        "-f",
        "-",
        input=dump(docs),
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_reconciled_resources_keep_their_spec_and_show_no_diff(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    docs = resources_in(cluster, namespace)
    apply = ["apply", "--server-side", "--field-manager=argocd-controller", "-f", "-"]
    cluster.kubectl(*apply, input=dump(docs), check=True)
    for doc in docs:
        name = doc["metadata"]["name"]
        obj = wait_for(
            lambda name=name: reconciled(cluster, namespace, name),
            timeout=60,
            message=f"status of {name}; operator log:\n{operator.log()}",
        )
        # The operator writes status only: no defaults in the spec, no annotations or finalizers of its own.
        assert obj["spec"] == doc["spec"]
        assert obj["metadata"]["generation"] == 1
        assert not obj["metadata"].get("finalizers")
        assert not [k for k in obj["metadata"].get("annotations", {}) if "telechat" in k or "kopf" in k]
        managers = {(m["manager"], m.get("subresource", "")) for m in obj["metadata"]["managedFields"]}
        assert all(sub == "status" for manager, sub in managers if manager != "argocd-controller"), managers
    diff = cluster.kubectl(
        "diff", "--server-side", "--field-manager=argocd-controller", "-f", "-", input=dump(docs)
    )
    assert diff.returncode == 0, f"perpetual diff:\n{diff.stdout}{diff.stderr}"


def _subset(rendered: Any, live: Any, path: str = "") -> list[str]:
    """Paths where ``rendered`` is not contained in ``live`` (the API server adds defaults, never removes)."""
    if isinstance(rendered, dict) and isinstance(live, dict):
        return [p for k, v in rendered.items() for p in _subset(v, live.get(k), f"{path}.{k}")]
    if isinstance(rendered, list) and isinstance(live, list) and len(rendered) == len(live):
        return [
            p
            for i, (a, b) in enumerate(zip(rendered, live, strict=True))
            for p in _subset(a, b, f"{path}[{i}]")
        ]
    return [] if rendered == live else [f"{path}: rendered {rendered!r}, live {live!r}"]


def test_render_prints_what_the_operator_applies(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    docs = resources_in(cluster, namespace, suffix="-r")[1:]  # TeleChat2-7B
    cluster.kubectl("apply", "--server-side", "-f", "-", input=dump(docs), check=True)
    name = docs[0]["metadata"]["name"]
    wait_for(lambda: reconciled(cluster, namespace, name), timeout=60, message=f"status of {name}")
    proc = subprocess.run(
        [sys.executable, "-m", "telechat_operator.cli", "render", "-f", "-"],
        input=dump(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**cluster.env, "TELECHAT_OPERATOR_CONFIG": ""},
    )
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert rendered
    for obj in rendered:
        meta = obj["metadata"]
        group = obj["apiVersion"].rpartition("/")[0]
        kind = f"{obj['kind'].lower()}.{group}" if group else obj["kind"].lower()
        live = get(cluster, namespace, meta["name"], kind=kind)
        expected = copy.deepcopy(obj)
        for ref in expected["metadata"].get("ownerReferences", []):
            ref.pop("uid", None)  # known only in the cluster
        problems = _subset(expected, live)
        assert not problems, f"{obj['kind']} {meta['name']}:\n" + "\n".join(problems)


def test_argocd_health_check_reads_the_operators_status(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    healthy = {
        "apiVersion": "telechat.ai/v1alpha1",
        "kind": "TeleChatDeployment",
        "metadata": {"name": "healthy", "namespace": namespace},
        "spec": {"model": {"name": "Tele-AI/TeleChat2-7B"}, "resources": {"cpu": 1, "memory": "2Gi"}},
    }
    no_volume = copy.deepcopy(healthy)
    no_volume["metadata"]["name"] = "no-volume"
    no_volume["spec"]["model"]["cache"] = {"size": "1Gi"}  # no StorageClass here: the PVC never binds
    missing_secret = copy.deepcopy(healthy)
    missing_secret["metadata"]["name"] = "missing-secret"
    missing_secret["spec"]["apiKeySecretRef"] = {"name": "absent", "key": "key"}
    cluster.kubectl("apply", "-f", "-", input=dump([healthy, no_volume, missing_secret]), check=True)

    def health_of(name: str, wanted: str) -> tuple[str, str] | None:
        obj = reconciled(cluster, namespace, name)
        if obj is None:
            return None
        verdict = argocd_health(obj)
        return verdict if verdict[0] == wanted else None

    _, message = wait_for(lambda: health_of("healthy", "Healthy"), timeout=60, message="healthy")
    assert "ModelServing" in message
    _, message = wait_for(lambda: health_of("no-volume", "Degraded"), timeout=60, message="unschedulable")
    assert "Unschedulable" in message, message
    _, message = wait_for(lambda: health_of("missing-secret", "Degraded"), timeout=60, message="bad Secret")
    assert "SecretNotFound" in message and "absent" in message, message

    fresh = copy.deepcopy(healthy)
    fresh["metadata"]["generation"] = 1
    assert argocd_health(fresh)[0] == "Progressing", "no status yet"
    stale = get(cluster, namespace, "healthy")
    stale["metadata"]["generation"] = stale["status"]["observedGeneration"] + 1
    assert argocd_health(stale) == (
        "Progressing",
        f"The operator has not yet observed generation {stale['metadata']['generation']}",
    )


def test_docs_and_example_files_exist() -> None:
    assert (GITOPS / "kustomization.yaml").is_file()
    text = DOC.read_text()
    for needle in ("healthCheckExprs", "observedGeneration", "kstatus", HEALTH_KEY):
        assert needle in text, needle
    assert Path(ROOT / "docs" / "quickstart.md").is_file()
