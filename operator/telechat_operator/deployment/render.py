"""All objects of one TeleChatDeployment: engine ConfigMap, Deployment, Service, optional cache PVC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import constants as c
from ..api.spec import TeleChatDeploymentSpec
from ..render.engine_vllm import render_engine
from ..render.hashing import content_hash
from ..render.names import child_names, common_labels, selector_labels
from ..render.objects import Owner, cache_claim, cache_pvc, configmap, object_metadata
from ..render.pod import PodInputs, render_pod_template
from ..resolve import Effective

COMPONENT = "server"


@dataclass(frozen=True)
class RenderedSet:
    objects: list[dict[str, Any]]


def _deployment(
    spec: TeleChatDeploymentSpec,
    eff: Effective,
    meta: dict[str, Any],
    selector: dict[str, str],
    template: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            # No surge: a new pod would need GPUs that a full cluster does not have, and the rollout would
            # wait forever. Replace one pod at a time instead.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            # Past this, the Deployment reports ProgressDeadlineExceeded; allow a full model load first.
            "progressDeadlineSeconds": eff.startup_budget_seconds + 600,
            "revisionHistoryLimit": 3,
            "template": template,
        },
    }


def _service(spec: TeleChatDeploymentSpec, meta: dict[str, Any], selector: dict[str, str]) -> dict[str, Any]:
    if spec.service.annotations:
        meta["annotations"] = dict(sorted(spec.service.annotations.items()))
    service_spec: dict[str, Any] = {
        "type": spec.service.type,
        "selector": selector,
        "ports": [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}],
    }
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": service_spec}


def render_deployment_set(spec: TeleChatDeploymentSpec, eff: Effective, owner: Owner) -> RenderedSet:
    names = child_names(owner.name)
    labels = common_labels(owner.name, COMPONENT, eff.model.model_id)
    selector = selector_labels(owner.name, COMPONENT)
    engine = render_engine(spec, eff)
    config_hash = content_hash(engine.files)
    pod_template = render_pod_template(
        PodInputs(
            spec=spec,
            eff=eff,
            engine=engine,
            configmap_name=names["configmap"],
            cache_claim=cache_claim(spec, names["pvc"]),
            labels=labels,
            # A changed engine config changes the template, so the Deployment rolls its pods.
            annotations={c.ANNOTATION_CONFIG_HASH: config_hash},
            api_key_ref=spec.api_key_secret_ref,
        )
    )
    meta = object_metadata(owner, names["deployment"], labels)
    objects: list[dict[str, Any]] = [configmap(owner, names["configmap"], labels, engine.files)]
    pvc = cache_pvc(spec, owner, names["pvc"], labels)
    if pvc is not None:
        objects.append(pvc)
    objects.append(_deployment(spec, eff, meta, selector, pod_template))
    objects.append(_service(spec, object_metadata(owner, names["service"], labels), selector))
    return RenderedSet(objects=objects)
