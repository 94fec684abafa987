"""The operator process: kopf settings, the webhook server, leader election and every kind, wired once.

One API client per process, made at startup and shared by every kind and the election. Each kind is
declared in its own folder (``deployment.kind.KIND``, ``batch.kind.KIND``) and registered here by the
kind-generic controller (``controller.kind.register_kind``), with a queue and workers of its own so
neither kind's work delays the other's.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from .api import constants as c
from .config import OperatorConfig
from .controller.gate import LeaderGate
from .controller.leader import LeaderElector, LeaseOptions
from .controller.registry import ControllerRuntime, KindController, register_kind
from .kinds import KINDS
from .kube import Kube
from .webhook import self_signed_cert


@dataclass
class WebhookOptions:
    """How admission is served: off, dev (self-signed, kopf registers it), or server (chart-managed)."""

    mode: str = "off"
    host: str = "127.0.0.1"
    port: int = 9443
    certfile: str | None = None
    keyfile: str | None = None


# Seconds from SIGTERM to exit at the latest.
EXIT_TIMEOUT_S = 8.0


@dataclass
class Runtime:
    config: OperatorConfig
    webhook: WebhookOptions = field(default_factory=WebhookOptions)
    # Reconcile only while holding this Lease (None: no leader election).
    leader: LeaseOptions | None = None
    kube: Kube | None = None
    controllers: list[KindController] = field(default_factory=list)
    elector: LeaderElector | None = None
    election: asyncio.Task[None] | None = None


def _configure(settings: kopf.OperatorSettings, rt: Runtime) -> None:
    # Our own prefix for anything kopf might store; with event handlers only, it stores nothing.
    settings.persistence.finalizer = f"{c.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    # The reconcilers post Events for condition transitions; kopf's per-log-line Events would be noise.
    settings.posting.enabled = False
    # Long-lived watches; the server closes them after this and kopf reconnects.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # kopf waits up to 10 min for a graceful exit; without an API server its own clean-up calls (the
    # webhook configuration's patch) retry for about a minute. Exit well inside a pod's 30 s grace period.
    settings.process.ultimate_exiting_timeout = EXIT_TIMEOUT_S
    settings.peering.name = "telechat-operator"
    settings.peering.mandatory = False
    settings.peering.clusterwide = not rt.config.namespaces
    _configure_webhook(settings, rt.webhook)


def _configure_webhook(settings: kopf.OperatorSettings, webhook: WebhookOptions) -> None:
    if webhook.mode == "dev":
        certdir = Path(tempfile.mkdtemp(prefix="telechat-webhook-"))
        cert = self_signed_cert(certdir, [webhook.host])
        settings.admission.server = kopf.WebhookServer(
            addr=webhook.host,
            host=webhook.host,
            port=webhook.port,
            certfile=str(cert.certfile),
            pkeyfile=str(cert.keyfile),
            cadata=cert.pem,
        )
        settings.admission.managed = c.GROUP
    elif webhook.mode == "server":
        # In a pod, --webhook-host is 0.0.0.0 (the chart passes it): the webhook Service routes to it.
        settings.admission.server = kopf.WebhookServer(
            addr=webhook.host,
            port=webhook.port,
            certfile=webhook.certfile,
            pkeyfile=webhook.keyfile,
        )


def _leader_gate(rt: Runtime) -> LeaderGate | None:
    if rt.leader is None:
        return None

    def may_process() -> bool:
        return rt.elector is not None and rt.elector.fresh()

    # Watches, health and the webhook run on every replica; reconcile workers wait for the Lease.
    return LeaderGate(may_process)


async def _elect(elector: LeaderElector, gate: LeaderGate) -> None:
    await elector.acquire()
    gate.leading.set()
    await elector.renew()


def build_registry(rt: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    gate = _leader_gate(rt)
    shared = ControllerRuntime(config=rt.config, gate=gate, admission=rt.webhook.mode != "off")
    rt.controllers = [register_kind(registry, shared, kind) for kind in KINDS]

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own gets no default login handlers: use the official client's config
        # loading (in-cluster service account, else kubeconfig), as our own API client does.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        _configure(settings, rt)
        kube = rt.kube = await Kube.connect()
        for controller in rt.controllers:
            controller.start(kube, kwargs)
        if rt.leader is not None and gate is not None:
            rt.elector = LeaderElector(kube, rt.leader)
            rt.election = asyncio.create_task(_elect(rt.elector, gate))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for controller in rt.controllers:
            await controller.stop()
        if rt.election is not None:
            rt.election.cancel()
            await asyncio.gather(rt.election, return_exceptions=True)
        if rt.elector is not None:
            await rt.elector.release()
        if rt.kube is not None:
            await rt.kube.close()

    return registry
