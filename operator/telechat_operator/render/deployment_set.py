"""All objects of one TeleChatDeployment: engine ConfigMap, Deployment, Service, optional cache PVC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import constants as c
from ..api.spec import ModelEngineSpec, TeleChatDeploymentSpec
from ..resolve import Effective
from .engine_vllm import render_engine
from .hashing import content_hash
from .names import child_names, common_labels, selector_labels
from .pod import PodInputs, render_pod_template

COMPONENT = "server"


@dataclass(frozen=True)
class Owner:
    """The resource that owns the children (ownerReferences); uid is unknown when rendering offline."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str | None = None

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class RenderedSet:
    objects: list[dict[str, Any]]
    selector: dict[str, str]
    service_name: str
    config_hash: str


def object_metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": owner.namespace, "labels": dict(labels)}
    if owner.uid:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def cache_claim(spec: ModelEngineSpec, created_name: str) -> str | None:
    """The PVC mounted as the model cache: an existing one, the one the operator creates, or none."""
    cache = spec.model.cache
    if cache is None:
        return None
    if cache.existing_claim:
        return cache.existing_claim
    return created_name if cache.size is not None else None


def cache_pvc(spec: ModelEngineSpec, owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The model cache PVC the operator creates when ``model.cache.size`` is set."""
    cache = spec.model.cache
    assert cache is not None and cache.size is not None
    access = cache.access_mode or ("ReadWriteMany" if spec.pod_count() > 1 else "ReadWriteOnce")
    pvc_spec: dict[str, Any] = {
        "accessModes": [access],
        "resources": {"requests": {"storage": str(cache.size)}},
    }
    if cache.storage_class_name:
        pvc_spec["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_metadata(owner, name, labels),
        "spec": pvc_spec,
    }


def render_deployment_set(spec: TeleChatDeploymentSpec, eff: Effective, owner: Owner) -> RenderedSet:
    names = child_names(owner.name)
    labels = common_labels(owner.name, COMPONENT, eff.model.model_id)
    selector = selector_labels(owner.name, COMPONENT)
    engine = render_engine(spec, eff)
    config_hash = content_hash(engine.files)

    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(owner, names["configmap"], labels),
        "data": engine.files,
    }
    claim = cache_claim(spec, names["pvc"])
    pod_template = render_pod_template(
        PodInputs(
            spec=spec,
            eff=eff,
            engine=engine,
            configmap_name=names["configmap"],
            cache_claim=claim,
            labels=labels,
            # A changed engine config changes the template, so the Deployment rolls its pods.
            annotations={c.ANNOTATION_CONFIG_HASH: config_hash},
            api_key_ref=spec.api_key_secret_ref,
        )
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(owner, names["deployment"], labels),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            # No surge: a new pod would need GPUs that a full cluster does not have, and the rollout would
            # wait forever. Replace one pod at a time instead.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            # Past this, the Deployment reports ProgressDeadlineExceeded; allow a full model load first.
            "progressDeadlineSeconds": eff.startup_budget_seconds + 600,
            "revisionHistoryLimit": 3,
            "template": pod_template,
        },
    }
    service_spec: dict[str, Any] = {
        "type": spec.service.type,
        "selector": selector,
        "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
    }
    service_meta = object_metadata(owner, names["service"], labels)
    if spec.service.annotations:
        service_meta["annotations"] = dict(sorted(spec.service.annotations.items()))
    service = {"apiVersion": "v1", "kind": "Service", "metadata": service_meta, "spec": service_spec}

    objects: list[dict[str, Any]] = [configmap]
    if spec.model.cache is not None and spec.model.cache.size is not None:
        objects.append(cache_pvc(spec, owner, names["pvc"], labels))
    objects.extend([deployment, service])
    return RenderedSet(
        objects=objects, selector=selector, service_name=names["service"], config_hash=config_hash
    )
