"""How a kind is declared to the operator: its resource, the child kinds it owns, how to check, render and
reconcile it. Each kind's folder fills in one ``Kind`` (``deployment/kind.py``, ``batch/kind.py``); the
controller (``controller.registry``) and ``telechat-operator render`` read it. No kopf here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import OperatorConfig
from ..kube import Kube
from ..render.objects import Owner
from ..validation import Checked
from .cache import ObservedState
from .status import Outcome


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str


CONFIGMAPS = Resource("", "v1", "configmaps")
SERVICES = Resource("", "v1", "services")
PVCS = Resource("", "v1", "persistentvolumeclaims")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")


class KindReconciler(Protocol):
    async def reconcile(self, ns: str, name: str) -> Outcome: ...

    def forget(self, ns: str, name: str) -> None: ...


@dataclass(frozen=True)
class Kind:
    """What the controller needs to run one kind."""

    kind: str
    plural: str
    # Prefix of the kind's index and handler ids, e.g. "tcd" -> "tcd_owners", "tcd_configmaps".
    prefix: str
    # Child kinds it owns, by a short name for the index id ("configmaps" -> "tcd_configmaps").
    children: Mapping[str, Resource]
    # app.kubernetes.io/component of the pods whose changes wake the owner up.
    pod_component: str
    reconciler: Callable[[Kube, OperatorConfig, ObservedState], KindReconciler]
    # Parse, resolve and validate a spec (raises SpecError); admission returns its warnings.
    check: Callable[[dict[str, Any] | None, OperatorConfig], Checked[Any]]
    # The objects of a checked spec, in the order they are applied (pure; `render` prints them).
    render: Callable[[Checked[Any], Owner], list[dict[str, Any]]]
    # Id of the admission handler: the webhook path is "/<id>" (the chart names it too).
    admission_id: str
    # Index the GPUs each node offers, for "no node has N GPUs" in status.
    node_gpus: bool = False

    @property
    def owner_index(self) -> str:
        return f"{self.prefix}_owners"

    @property
    def pod_index(self) -> str:
        return f"{self.prefix}_pods"

    def child_index(self, name: str) -> str:
        return f"{self.prefix}_{name}"
