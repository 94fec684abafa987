"""kopf wiring: settings, watch-fed indices, thin event handlers that enqueue, and the webhook.

Handlers do no work themselves: every event about a TeleChatDeployment or one of its children puts the
owner's key on the work queue; workers run the level-based reconcile. Only event and index handlers are
used, so kopf itself writes nothing to the objects (no progress annotations, no finalizers).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from .api import constants as c
from .batch.handlers import register_batch
from .config import OperatorConfig
from .controller.cache import ObservedState, controller_owner, snapshot
from .controller.reconciler import Reconciler
from .controller.workqueue import WorkQueue
from .kube import Kube
from .webhook import Rejected, review, self_signed_cert

log = logging.getLogger(__name__)

MANAGED = {c.LABEL_MANAGED_BY: c.MANAGED_BY}
CHILD_INDICES = ("tcd_configmaps", "tcd_services", "tcd_deployments", "tcd_pvcs")


@dataclass
class WebhookOptions:
    """How admission is served: off, dev (self-signed, kopf registers it), or server (chart-managed)."""

    mode: str = "off"
    host: str = "127.0.0.1"
    port: int = 9443
    certfile: str | None = None
    keyfile: str | None = None


@dataclass
class Runtime:
    config: OperatorConfig
    webhook: WebhookOptions = field(default_factory=WebhookOptions)
    queue: WorkQueue = field(default_factory=WorkQueue)
    reconciler: Reconciler | None = None
    kube: Kube | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Set by the first event handler call: kopf calls handlers only once every index is populated.
    indexed: asyncio.Event | None = None


def _owner_key(body: Any, namespace: str | None) -> tuple[str, str] | None:
    owner = controller_owner(body, c.KIND)
    return (namespace, owner) if owner and namespace else None


def _configure(settings: kopf.OperatorSettings, rt: Runtime) -> None:
    # Our own prefix for anything kopf might store; with event handlers only, it stores nothing.
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    # The reconciler posts Events for condition transitions; kopf's per-log-line Events would be noise.
    settings.posting.enabled = False
    # Long-lived watches; the server closes them after this and kopf reconnects.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.peering.name = "telechat-operator"
    settings.peering.mandatory = False
    settings.peering.clusterwide = not rt.config.namespaces
    if rt.webhook.mode == "dev":
        certdir = Path(tempfile.mkdtemp(prefix="telechat-webhook-"))
        cert = self_signed_cert(certdir, [rt.webhook.host])
        settings.admission.server = kopf.WebhookServer(
            addr=rt.webhook.host,
            host=rt.webhook.host,
            port=rt.webhook.port,
            certfile=str(cert.certfile),
            pkeyfile=str(cert.keyfile),
            cadata=cert.pem,
        )
        settings.admission.managed = c.GROUP
    elif rt.webhook.mode == "server":
        # In a pod, --webhook-host is 0.0.0.0 (the chart passes it): the webhook Service routes to it.
        settings.admission.server = kopf.WebhookServer(
            addr=rt.webhook.host,
            port=rt.webhook.port,
            certfile=rt.webhook.certfile,
            pkeyfile=rt.webhook.keyfile,
        )


def build_registry(rt: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    config = rt.config

    def mark_indexed() -> None:
        if rt.indexed is not None and not rt.indexed.is_set():
            rt.indexed.set()

    # --- indices: the operator's view of the cluster, fed by watches --------------------------------
    @kopf.index(c.GROUP, c.VERSION, c.PLURAL, id="tcd_owners", registry=registry)
    async def tcd_owners(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): snapshot(body, keep=("metadata", "spec", "status"))}

    def child_index(plural_ref: tuple[str, str, str], index_id: str) -> None:
        group, version, plural = plural_ref

        @kopf.index(group, version, plural, labels=MANAGED, id=index_id, registry=registry)
        async def index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, Any] | None:
            key = _owner_key(body, namespace)
            return {key: snapshot(body)} if key else None

        @kopf.on.event(group, version, plural, labels=MANAGED, id=f"{index_id}-event", registry=registry)
        async def event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
            mark_indexed()
            key = _owner_key(body, namespace)
            if key:
                rt.queue.add(key)

    child_index(("", "v1", "configmaps"), "tcd_configmaps")
    child_index(("", "v1", "services"), "tcd_services")
    child_index(("apps", "v1", "deployments"), "tcd_deployments")
    child_index(("", "v1", "persistentvolumeclaims"), "tcd_pvcs")

    @kopf.index("", "v1", "pods", labels=MANAGED, id="tcd_pods", registry=registry)
    async def tcd_pods(
        body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
    ) -> dict[Any, Any] | None:
        instance, component = labels.get(c.LABEL_INSTANCE), labels.get(c.LABEL_COMPONENT)
        if not instance or not component or not namespace:
            return None
        return {(namespace, instance, component): snapshot(body, keep=("metadata", "status"))}

    @kopf.on.event("", "v1", "pods", labels=MANAGED, registry=registry)
    async def pod_event(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        mark_indexed()
        instance = labels.get(c.LABEL_INSTANCE)
        if namespace and instance and labels.get(c.LABEL_COMPONENT) == "server":
            rt.queue.add((namespace, instance))

    if config.watch_nodes:

        @kopf.index("", "v1", "nodes", id="gpu_nodes", registry=registry)
        async def gpu_nodes(status: kopf.Status, **_: Any) -> dict[Any, Any]:
            """Extended resources each node offers, for "no node has N GPUs" in status."""
            offers: dict[Any, Any] = {}
            for resource, amount in (status.get("allocatable") or {}).items():
                if "/" in resource and str(amount).isdigit():
                    offers[resource] = int(amount)
            return offers

    # --- the resource itself -------------------------------------------------------------------
    @kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry)
    async def tcd_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
        mark_indexed()
        if namespace is None:
            return
        if type == "DELETED":
            if rt.reconciler is not None:
                rt.reconciler.forget(namespace, name)
            rt.queue.forget((namespace, name))
            return
        rt.queue.add((namespace, name))

    if rt.webhook.mode != "off":

        @kopf.on.validate(
            c.GROUP,
            c.VERSION,
            c.PLURAL,
            id="validate",
            operations={"CREATE", "UPDATE"},
            ignore_failures=True,  # the reconciler validates again; an operator outage must not block writes
            registry=registry,
        )
        def validate(spec: kopf.Spec, warnings: list[str], **_: Any) -> None:
            try:
                warnings.extend(review(dict(spec), config))
            except Rejected as exc:
                raise kopf.AdmissionError(exc.message, code=422) from None

    # --- lifecycle -----------------------------------------------------------------------------
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own gets no default login handlers: use the official client's config
        # loading (in-cluster service account, else kubeconfig), as our own API client does.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        _configure(settings, rt)
        rt.kube = await Kube.connect()
        node_index = "gpu_nodes" if config.watch_nodes else None
        state = ObservedState(kwargs, "tcd_owners", CHILD_INDICES, "tcd_pods", node_index)
        rt.reconciler = Reconciler(rt.kube, config, state)
        rt.indexed = asyncio.Event()
        for _ in range(config.workers):
            rt.tasks.append(asyncio.create_task(rt.queue.run_worker(_process(rt))))
        rt.tasks.append(asyncio.create_task(_resync(rt, kwargs["tcd_owners"])))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in rt.tasks:
            task.cancel()
        await asyncio.gather(*rt.tasks, return_exceptions=True)
        if rt.kube is not None:
            await rt.kube.close()

    # TeleChatBatchJob: indices, queue and workers of its own, so neither kind's path disturbs the other.
    register_batch(registry, rt)
    return registry


def _process(rt: Runtime) -> Any:
    async def process(key: Any) -> None:
        assert rt.reconciler is not None
        namespace, name = key
        outcome = await rt.reconciler.reconcile(namespace, name)
        if outcome.requeue_after is not None:
            rt.queue.add_after(key, outcome.requeue_after)

    return process


async def _resync(rt: Runtime, owners: Any) -> None:
    """Every resync interval, reconcile every resource (drift no watch reports, e.g. a missing Secret)."""
    assert rt.indexed is not None
    await rt.indexed.wait()
    while True:
        await asyncio.sleep(rt.config.resync_seconds)
        for key in list(owners):
            rt.queue.add(key)
