"""The vLLM pod template, shared by the serving Deployment and the batch Job."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..api.spec import ModelEngineSpec, SecretKeyRef
from ..resolve import Effective
from .engine_vllm import CONFIG_DIR, CONTAINER_PORT, MODEL_CACHE_DIR, MODEL_VOLUME_DIR, EngineFiles

CONTAINER_NAME = "vllm"
PROBE_PERIOD_SECONDS = 10
# Non-root user for vLLM; fsGroup makes the cache volume writable for it.
RUN_AS_USER = 1000


@dataclass(frozen=True)
class PodInputs:
    spec: ModelEngineSpec
    eff: Effective
    engine: EngineFiles
    configmap_name: str
    cache_claim: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    # Serving only: the OpenAI API key, passed to vLLM through the environment.
    api_key_ref: SecretKeyRef | None = None
    # False for a batch pod: nothing listens, so no container port (probes follow the restart policy).
    serves_http: bool = True
    # Workload-specific environment and volumes (a batch job's input and output), after the shared ones.
    extra_env: tuple[dict[str, Any], ...] = ()
    extra_volumes: tuple[dict[str, Any], ...] = ()
    extra_mounts: tuple[dict[str, Any], ...] = ()


def _env(inputs: PodInputs) -> list[dict[str, Any]]:
    spec, api_key = inputs.spec, inputs.api_key_ref
    env: list[dict[str, Any]] = [
        # Writable home for vLLM, Triton and Hugging Face caches on a read-only root filesystem.
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": MODEL_CACHE_DIR},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
    ]
    if inputs.cache_claim is not None:
        # vLLM's compile cache (torch.compile and Inductor output, keyed by model, config and vLLM version)
        # on the cache volume: a new pod reuses the last one's instead of compiling again (bench/gpu).
        env.append({"name": "VLLM_CACHE_ROOT", "value": f"{MODEL_CACHE_DIR}/vllm"})
    if spec.model.pvc is not None:
        # Weights are local: never reach out to the hub (the remote code is in the checkpoint folder).
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    token = spec.model.hf_token_secret_ref
    if token is not None:
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}}
        )
    if api_key is not None:
        # vLLM reads VLLM_API_KEY when --api-key is not given: the key never appears in args or ConfigMaps.
        env.append(
            {
                "name": "VLLM_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": api_key.name, "key": api_key.key}},
            }
        )
    env.extend(inputs.extra_env)
    for var in spec.engine.env:
        item: dict[str, Any] = {"name": var.name}
        if var.value_from is not None:
            item["valueFrom"] = var.value_from
        else:
            item["value"] = var.value or ""
        env.append(item)
    return env


def _resources(spec: ModelEngineSpec, eff: Effective) -> dict[str, Any]:
    gpus = str(eff.gpus_per_replica)
    gpu_name = spec.resources.gpu_resource_name
    requests: dict[str, Any] = {gpu_name: gpus}
    limits: dict[str, Any] = {gpu_name: gpus}
    if spec.resources.cpu is not None:
        requests["cpu"] = str(spec.resources.cpu)
    if spec.resources.memory is not None:
        requests["memory"] = str(spec.resources.memory)
        limits["memory"] = str(spec.resources.memory)
    return {"requests": requests, "limits": limits}


def _probes(budget_seconds: int) -> dict[str, Any]:
    health = {"path": "/health", "port": "http"}
    return {
        # vLLM refuses connections until the weights are loaded: give it the whole budget, then check often.
        "startupProbe": {
            "httpGet": health,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 5,
            "failureThreshold": math.ceil(budget_seconds / PROBE_PERIOD_SECONDS),
        },
        "readinessProbe": {
            "httpGet": health,
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        # /health answers 503 only when the engine is dead; restart then, not on a slow request.
        "livenessProbe": {
            "httpGet": health,
            "periodSeconds": 15,
            "timeoutSeconds": 10,
            "failureThreshold": 4,
        },
    }


def _volumes(inputs: PodInputs) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spec, eff = inputs.spec, inputs.eff
    volumes: list[dict[str, Any]] = [
        {"name": "engine-config", "configMap": {"name": inputs.configmap_name}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": eff.shared_memory_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "engine-config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if inputs.cache_claim is not None:
        volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": inputs.cache_claim}})
    else:
        volumes.append({"name": "model-cache", "emptyDir": {}})
    mounts.append({"name": "model-cache", "mountPath": MODEL_CACHE_DIR})
    pvc = spec.model.pvc
    if pvc is not None:
        volumes.append(
            {
                "name": "model",
                "persistentVolumeClaim": {"claimName": pvc.claim_name, "readOnly": pvc.read_only},
            }
        )
        mounts.append({"name": "model", "mountPath": MODEL_VOLUME_DIR, "readOnly": pvc.read_only})
    volumes.extend(inputs.extra_volumes)
    mounts.extend(inputs.extra_mounts)
    return volumes, mounts


def _node_selector(spec: ModelEngineSpec) -> dict[str, str]:
    selector = dict(sorted(spec.scheduling.node_selector.items()))
    if spec.resources.gpu_product:
        selector[spec.resources.gpu_product_label] = spec.resources.gpu_product
    return selector


def _tolerations(spec: ModelEngineSpec) -> list[dict[str, Any]]:
    # GPU nodes are commonly tainted with the GPU resource name; tolerate that taint by default.
    tolerations: list[dict[str, Any]] = [
        {"key": spec.resources.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"}
    ]
    tolerations.extend(spec.scheduling.tolerations)
    return tolerations


def render_pod_template(inputs: PodInputs, restart_policy: str = "Always") -> dict[str, Any]:
    spec, eff, engine = inputs.spec, inputs.eff, inputs.engine
    volumes, mounts = _volumes(inputs)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": eff.image,
        "imagePullPolicy": eff.image_pull_policy,
        "command": engine.command,
        "args": engine.args,
        "env": _env(inputs),
    }
    if inputs.serves_http:
        container["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
    container.update(
        {
            "resources": _resources(spec, eff),
            "volumeMounts": mounts,
            # A crash's last log lines (vLLM's own error) land in the pod status; the operator reads them.
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    )
    if restart_policy == "Always":
        container.update(_probes(eff.startup_budget_seconds))
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "restartPolicy": restart_policy,
        # vLLM needs no Kubernetes API access.
        "automountServiceAccountToken": False,
        # Service links would inject e.g. VLLM_PORT for a Service named vllm, which vLLM misreads.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "tolerations": _tolerations(spec),
    }
    node_selector = _node_selector(spec)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if spec.scheduling.affinity:
        pod_spec["affinity"] = spec.scheduling.affinity
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name
    return {
        "metadata": {"labels": dict(inputs.labels), "annotations": dict(inputs.annotations)},
        "spec": pod_spec,
    }
