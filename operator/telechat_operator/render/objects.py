"""What every rendered child shares: the owner reference, object metadata, and the model cache PVC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.spec import ModelEngineSpec


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


def object_metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": owner.namespace, "labels": dict(labels)}
    if owner.uid:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def configmap(owner: Owner, name: str, labels: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_metadata(owner, name, labels),
        "data": data,
    }


def cache_claim(spec: ModelEngineSpec, created_name: str) -> str | None:
    """The PVC mounted as the model cache: an existing one, the one the operator creates, or none."""
    cache = spec.model.cache
    if cache is None:
        return None
    if cache.existing_claim:
        return cache.existing_claim
    return created_name if cache.size is not None else None


def cache_pvc(
    spec: ModelEngineSpec, owner: Owner, name: str, labels: dict[str, str]
) -> dict[str, Any] | None:
    """The model cache PVC the operator creates when ``model.cache.size`` is set; None otherwise."""
    cache = spec.model.cache
    if cache is None or cache.size is None:
        return None
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
