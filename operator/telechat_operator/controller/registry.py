"""The kind-generic controller: ``register_kind`` writes the kopf wiring of any ``Kind`` once.

What it registers for a kind:

- indices fed by watches: the owners, each owned child kind (by the owner named in its controller
  ownerReference), the kind's pods (by instance and component), and, if the kind asks, the GPUs nodes offer;
- event handlers that only put the owner's key on the kind's work queue (level-based: whatever the event,
  the reconcile compares the whole desired state with the observed one);
- the admission check (the same ``check`` the reconciler runs);
- workers that run the reconciler, and a resync that enqueues every owner now and then (started by the
  process root once the API client exists).

Only event and index handlers are used, so kopf itself writes nothing to the objects (no progress
annotations, no finalizers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from ..api import constants as c
from ..config import OperatorConfig
from ..kube import Kube
from ..validation import SpecError
from .cache import IndexLike, ObservedState, controller_owner, snapshot
from .gate import Gate
from .kind import PODS, Kind, KindReconciler, Resource
from .workqueue import WorkQueue

log = logging.getLogger(__name__)

MANAGED = {c.LABEL_MANAGED_BY: c.MANAGED_BY}
NODE_INDEX = "gpu_nodes"


@dataclass
class ControllerRuntime:
    """What every kind of one operator process shares: configuration, the API client and the gate."""

    config: OperatorConfig
    gate: Gate | None = None
    admission: bool = False
    kube: Kube | None = None


@dataclass
class KindController:
    """One kind's queue, reconciler and tasks, started and stopped by the process root."""

    kind: Kind
    runtime: ControllerRuntime
    queue: WorkQueue
    reconciler: KindReconciler | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Set by the first event handler call: kopf calls handlers only once every index is populated.
    indexed: asyncio.Event | None = None

    def mark_indexed(self) -> None:
        if self.indexed is not None and not self.indexed.is_set():
            self.indexed.set()

    def start(self, kube: Kube, indices: Mapping[str, IndexLike]) -> None:
        kind, config = self.kind, self.runtime.config
        node_index = NODE_INDEX if kind.node_gpus and config.watch_nodes else None
        children = [kind.child_index(name) for name in kind.children]
        state = ObservedState(indices, kind.owner_index, children, kind.pod_index, node_index)
        reconciler = kind.reconciler(kube, config, state)
        self.reconciler = reconciler
        self.indexed = asyncio.Event()

        async def process(key: Any) -> None:
            namespace, name = key
            outcome = await reconciler.reconcile(namespace, name)
            if outcome.requeue_after is not None:
                self.queue.add_after(key, outcome.requeue_after)

        for _ in range(config.workers):
            self.tasks.append(asyncio.create_task(self.queue.run_worker(process)))
        self.tasks.append(asyncio.create_task(self._resync(indices[kind.owner_index])))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _resync(self, owners: Any) -> None:
        """Every resync interval, reconcile every resource (drift no watch reports, e.g. a missing Secret)."""
        assert self.indexed is not None
        await self.indexed.wait()
        while True:
            await asyncio.sleep(self.runtime.config.resync_seconds)
            for key in list(owners):
                self.queue.add(key)

    def owner_event(self, type: str, namespace: str | None, name: str) -> None:
        self.mark_indexed()
        if namespace is None:
            return
        if type == "DELETED":
            if self.reconciler is not None:
                self.reconciler.forget(namespace, name)
            self.queue.forget((namespace, name))
            return
        self.queue.add((namespace, name))


def register_kind(registry: kopf.OperatorRegistry, runtime: ControllerRuntime, kind: Kind) -> KindController:
    """Register ``kind``'s indices, event handlers and admission check; the caller starts its workers."""
    ctl = KindController(kind, runtime, WorkQueue(gate=runtime.gate))
    _register_owner(registry, ctl)
    for name, resource in kind.children.items():
        _register_child(registry, ctl, resource, kind.child_index(name))
    _register_pods(registry, ctl)
    if kind.node_gpus and runtime.config.watch_nodes:
        _register_nodes(registry)
    if runtime.admission:
        _register_admission(registry, ctl)
    return ctl


def _register_owner(registry: kopf.OperatorRegistry, ctl: KindController) -> None:
    kind = ctl.kind

    @kopf.index(c.GROUP, c.VERSION, kind.plural, id=kind.owner_index, registry=registry)
    async def owners(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): snapshot(body, keep=("metadata", "spec", "status"))}

    @kopf.on.event(c.GROUP, c.VERSION, kind.plural, id=f"{kind.prefix}_event", registry=registry)
    async def owner_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
        ctl.owner_event(type, namespace, name)


def _register_child(
    registry: kopf.OperatorRegistry, ctl: KindController, resource: Resource, index_id: str
) -> None:
    owner_kind = ctl.kind.kind

    def owner_key(body: Any, namespace: str | None) -> tuple[str, str] | None:
        owner = controller_owner(body, owner_kind)
        return (namespace, owner) if owner and namespace else None

    group, version, plural = resource.group, resource.version, resource.plural

    @kopf.index(group, version, plural, labels=MANAGED, id=index_id, registry=registry)
    async def index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any] | None:
        key = owner_key(body, namespace)
        return {key: snapshot(body)} if key else None

    @kopf.on.event(group, version, plural, labels=MANAGED, id=f"{index_id}-event", registry=registry)
    async def event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        ctl.mark_indexed()
        key = owner_key(body, namespace)
        if key:
            ctl.queue.add(key)


def _register_pods(registry: kopf.OperatorRegistry, ctl: KindController) -> None:
    kind = ctl.kind
    component = kind.pod_component
    labels = {**MANAGED, c.LABEL_COMPONENT: component}

    @kopf.index(PODS.group, PODS.version, PODS.plural, labels=labels, id=kind.pod_index, registry=registry)
    async def pods(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> dict[Any, Any] | None:
        instance = labels.get(c.LABEL_INSTANCE)
        if not instance or not namespace:
            return None
        return {(namespace, instance, component): snapshot(body, keep=("metadata", "status"))}

    @kopf.on.event(
        PODS.group, PODS.version, PODS.plural, labels=labels, id=f"{kind.pod_index}-event", registry=registry
    )
    async def pod_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        ctl.mark_indexed()
        instance = labels.get(c.LABEL_INSTANCE)
        if namespace and instance:
            ctl.queue.add((namespace, instance))


def _register_nodes(registry: kopf.OperatorRegistry) -> None:
    @kopf.index("", "v1", "nodes", id=NODE_INDEX, registry=registry)
    async def gpu_nodes(status: kopf.Status, **_: Any) -> dict[Any, Any]:
        """Extended resources each node offers, for "no node has N GPUs" in status."""
        offers: dict[Any, Any] = {}
        for resource, amount in (status.get("allocatable") or {}).items():
            if "/" in resource and str(amount).isdigit():
                offers[resource] = int(amount)
        return offers


def _register_admission(registry: kopf.OperatorRegistry, ctl: KindController) -> None:
    kind, config = ctl.kind, ctl.runtime.config

    @kopf.on.validate(
        c.GROUP,
        c.VERSION,
        kind.plural,
        id=kind.admission_id,
        operations={"CREATE", "UPDATE"},
        ignore_failures=True,  # the reconciler validates again; an operator outage must not block writes
        registry=registry,
    )
    def validate(spec: kopf.Spec, warnings: list[str], **_: Any) -> None:
        try:
            checked = kind.check(dict(spec), config)
        except SpecError as exc:
            raise kopf.AdmissionError("; ".join(exc.errors), code=422) from None
        warnings.extend(checked.warnings)
