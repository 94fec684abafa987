"""kopf wiring for TeleChatBatchJob, added to the operator's registry by ``register_batch``.

Same pattern as the TeleChatDeployment wiring (``telechat_operator.handlers``), kept apart so neither path
disturbs the other: indices of its own (owners, the ConfigMaps, PVCs and Jobs it owns, its pods), thin
event handlers that put the owner's key on a work queue of its own, and workers running the reconciler.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import kopf

from ..api import constants as c
from ..controller.cache import ObservedState, controller_owner, snapshot
from ..controller.workqueue import WorkQueue
from ..kube import Kube
from ..validation import SpecError
from .reconciler import BatchReconciler
from .render import COMPONENT
from .validation import check_batch

if TYPE_CHECKING:
    from ..handlers import Runtime

log = logging.getLogger(__name__)

MANAGED = {c.LABEL_MANAGED_BY: c.MANAGED_BY}
BATCH_PODS = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_COMPONENT: COMPONENT}
OWNER_INDEX = "tcb_owners"
POD_INDEX = "tcb_pods"
CHILD_INDICES = ("tcb_configmaps", "tcb_pvcs", "tcb_jobs")


def _owner_key(body: Any, namespace: str | None) -> tuple[str, str] | None:
    owner = controller_owner(body, c.BATCH_KIND)
    return (namespace, owner) if owner and namespace else None


def register_batch(registry: kopf.OperatorRegistry, rt: Runtime) -> None:
    """Add the batch kind's indices, handlers, admission check and workers to ``registry``."""
    queue = WorkQueue()
    tasks: list[asyncio.Task[None]] = []
    holder: dict[str, Any] = {}

    @kopf.index(c.GROUP, c.VERSION, c.BATCH_PLURAL, id=OWNER_INDEX, registry=registry)
    def tcb_owners(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): snapshot(body, keep=("metadata", "spec", "status"))}

    def child_index(plural_ref: tuple[str, str, str], index_id: str) -> None:
        group, version, plural = plural_ref

        @kopf.index(group, version, plural, labels=MANAGED, id=index_id, registry=registry)
        def index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any] | None:
            key = _owner_key(body, namespace)
            return {key: snapshot(body)} if key else None

        @kopf.on.event(group, version, plural, labels=MANAGED, id=f"{index_id}-event", registry=registry)
        def event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
            key = _owner_key(body, namespace)
            if key:
                queue.add(key)

    child_index(("", "v1", "configmaps"), "tcb_configmaps")
    child_index(("", "v1", "persistentvolumeclaims"), "tcb_pvcs")
    child_index(("batch", "v1", "jobs"), "tcb_jobs")

    @kopf.index("", "v1", "pods", labels=BATCH_PODS, id=POD_INDEX, registry=registry)
    def tcb_pods(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> dict[Any, Any] | None:
        instance = labels.get(c.LABEL_INSTANCE)
        if not instance or not namespace:
            return None
        return {(namespace, instance, COMPONENT): snapshot(body, keep=("metadata", "status"))}

    @kopf.on.event("", "v1", "pods", labels=BATCH_PODS, id="tcb_pods-event", registry=registry)
    def pod_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        instance = labels.get(c.LABEL_INSTANCE)
        if namespace and instance:
            queue.add((namespace, instance))

    @kopf.on.event(c.GROUP, c.VERSION, c.BATCH_PLURAL, id="tcb_event", registry=registry)
    def tcb_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
        if namespace is None:
            return
        if type == "DELETED":
            reconciler = holder.get("reconciler")
            if reconciler is not None:
                reconciler.forget(namespace, name)
            queue.forget((namespace, name))
            return
        queue.add((namespace, name))

    if rt.webhook.mode != "off":
        # kopf refuses to start with admission handlers but no admission server.
        @kopf.on.validate(
            c.GROUP,
            c.VERSION,
            c.BATCH_PLURAL,
            id="validate-batch",
            operations={"CREATE", "UPDATE"},
            ignore_failures=True,  # the reconciler validates again; an operator outage must not block writes
            registry=registry,
        )
        def validate(spec: kopf.Spec, warnings: list[str], **_: Any) -> None:
            try:
                verdict = check_batch(dict(spec), rt.config)[1]
            except SpecError as exc:
                raise kopf.AdmissionError("; ".join(exc.errors), code=422) from None
            warnings.extend(verdict.warnings)

    @kopf.on.startup(id="tcb_startup", registry=registry)
    async def startup(**kwargs: Any) -> None:
        kube = await Kube.connect()
        state = ObservedState(kwargs, OWNER_INDEX, CHILD_INDICES, POD_INDEX)
        reconciler = BatchReconciler(kube, rt.config, state)
        holder.update(kube=kube, reconciler=reconciler)

        async def process(key: Any) -> None:
            namespace, name = key
            outcome = await reconciler.reconcile(namespace, name)
            if outcome.requeue_after is not None:
                queue.add_after(key, outcome.requeue_after)

        for _ in range(rt.config.workers):
            tasks.append(asyncio.create_task(queue.run_worker(process)))
        tasks.append(asyncio.create_task(_resync(queue, kwargs[OWNER_INDEX], rt.config.resync_seconds)))

    @kopf.on.cleanup(id="tcb_cleanup", registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        kube = holder.get("kube")
        if kube is not None:
            await kube.close()


async def _resync(queue: WorkQueue, owners: Any, interval: float) -> None:
    """Every resync interval, reconcile every batch (a finished one with no Job left costs nothing)."""
    while True:
        await asyncio.sleep(interval)
        for key in list(owners):
            queue.add(key)
