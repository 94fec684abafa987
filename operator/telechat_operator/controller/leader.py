"""Leader election on a coordination.k8s.io/v1 Lease, so that more than one operator replica is safe.

kopf's peering with equal priorities is not leader election: every replica would reconcile. Here every
replica runs kopf completely (watches and indices stay warm, the health endpoint and the admission webhook
answer on all of them, so rolling updates and readiness work as usual), but the reconcile workers wait
until this replica holds the Lease. Everything the operator writes goes through those workers, so a
standby writes nothing.

The algorithm is client-go's: a candidate takes the Lease when it is free or when its record has not
changed for ``leaseDurationSeconds`` of *local* time (no comparison of clocks across machines); the
holder renews it every ``retry_period`` seconds. A leader that has not renewed within ``renew_deadline``
(shorter than the lease duration), or that finds another holder, exits the process at once: it cannot
know whether someone else already reconciles, and Kubernetes restarts it as a candidate. On a clean
shutdown the leader releases the Lease so that a standby takes over without waiting for it to expire.

The work queues wait on a ``LeaderGate`` that asks ``LeaderElector.fresh`` before each key; the process
root (``telechat_operator.process``) makes the gate and runs the election.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..kube import ApiError, Kube

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Exit status of a leader that lost its Lease (EX_TEMPFAIL: restart and try again).
EXIT_LEASE_LOST = 75


@dataclass(frozen=True)
class LeaseOptions:
    name: str
    namespace: str
    identity: str
    lease_seconds: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_seconds:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period:g} s, {self.renew_deadline:g} s, {self.lease_seconds:g} s"
            )


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease_spec(lease: dict[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, dict) else {}


# How long a clean shutdown waits to hand the Lease over before leaving it to expire.
RELEASE_TIMEOUT_S = 2.0


def _exit_lost() -> None:
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_LEASE_LOST)


class LeaderElector:
    """Acquire, renew and release one Lease; ``leading`` is set while this replica holds it."""

    def __init__(
        self,
        kube: Kube,
        options: LeaseOptions,
        *,
        on_lost: Callable[[], None] = _exit_lost,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.options = options
        self.on_lost = on_lost
        self.clock = clock
        self.leading = asyncio.Event()
        # Local monotonic time of the last successful acquire or renew.
        self.renewed_at: float | None = None
        # The last Lease spec seen and when (local monotonic time) it last changed.
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0

    @property
    def _path(self) -> str:
        return LEASES.format(namespace=self.options.namespace) + f"/{self.options.name}"

    def _record(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _now_micro()
        ours = previous is not None and previous.get("holderIdentity") == self.options.identity
        transitions = int((previous or {}).get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.options.identity,
            "leaseDurationSeconds": max(1, round(self.options.lease_seconds)),
            "acquireTime": (previous or {}).get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": transitions if ours or previous is None else transitions + 1,
        }

    def _observe(self, spec: dict[str, Any]) -> None:
        if spec != self._observed:
            self._observed = spec
            self._observed_at = self.clock()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards. Raises ApiError on API errors."""
        lease = await self._get()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.options.name, "namespace": self.options.namespace},
                "spec": self._record(None),
            }
            try:
                created = await self.kube.request(
                    "POST", LEASES.format(namespace=self.options.namespace), body=body
                )
            except ApiError as exc:
                if exc.status == 409:  # another candidate created it first
                    return False
                raise
            self._observe(_lease_spec(created))
            self.renewed_at = self.clock()
            return True
        spec = _lease_spec(lease)
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.options.lease_seconds)
        if holder and holder != self.options.identity and self.clock() < self._observed_at + duration:
            return False
        lease["spec"] = self._record(spec)
        try:
            updated = await self.kube.request("PUT", self._path, body=lease)
        except ApiError as exc:
            if exc.status == 409:  # changed since our read: someone renewed or took it
                return False
            raise
        self._observe(_lease_spec(updated))
        self.renewed_at = self.clock()
        return True

    async def _get(self) -> dict[str, Any] | None:
        try:
            return await self.kube.request("GET", self._path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def fresh(self) -> bool:
        """True while leading and the last renewal is recent enough that no other replica can lead.

        Checked before each reconcile: a process that was frozen (SIGSTOP, a long pause) past the renew
        deadline must not write before its renewal loop has found out whether it still leads.
        """
        return (
            self.leading.is_set()
            and self.renewed_at is not None
            and self.clock() - self.renewed_at < self.options.renew_deadline
        )

    async def _attempt(self) -> bool | None:
        """An attempt bounded by the renew deadline; None when the API did not answer in time or failed."""
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), timeout=self.options.renew_deadline)
        except (ApiError, OSError, TimeoutError) as exc:
            log.warning("lease %s/%s: %s", self.options.namespace, self.options.name, exc)
            return None
        except Exception as exc:  # the client raises its own types for connection trouble
            log.warning("lease %s/%s: %s: %s", self.options.namespace, self.options.name, type(exc), exc)
            return None

    async def acquire(self) -> None:
        """Return once this replica holds the Lease."""
        opts = self.options
        log.info("leader election: %s waits for lease %s/%s", opts.identity, opts.namespace, opts.name)
        while await self._attempt() is not True:
            await asyncio.sleep(opts.retry_period)
        log.info("leader election: %s acquired lease %s/%s", opts.identity, opts.namespace, opts.name)
        self.leading.set()

    async def renew(self) -> None:
        """Renew until the Lease is lost, then call ``on_lost`` (by default: exit the process)."""
        opts = self.options
        last_renewed = self.clock()
        while True:
            await asyncio.sleep(opts.retry_period)
            result = await self._attempt()
            if result is True:
                last_renewed = self.clock()
                continue
            holder = (self._observed or {}).get("holderIdentity")
            if result is False and holder and holder != opts.identity:
                reason = f"{holder} holds it now"
            elif self.clock() - last_renewed > opts.renew_deadline:
                reason = f"not renewed for {opts.renew_deadline:g} s"
            else:
                continue
            self.leading.clear()
            log.critical(
                "leader election: %s lost lease %s/%s (%s); exiting so that only one replica reconciles",
                opts.identity,
                opts.namespace,
                opts.name,
                reason,
            )
            self.on_lost()
            return

    async def run(self) -> None:
        await self.acquire()
        await self.renew()

    async def release(self) -> None:
        """Give the Lease up (clean shutdown) so that a standby need not wait for it to expire.

        Best effort and bounded: this runs in kopf's cleanup, which kopf retries while it raises, so an
        unreachable API server must neither raise nor block here (the Lease then expires on its own)."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            await asyncio.wait_for(
                self._give_up(), timeout=min(RELEASE_TIMEOUT_S, self.options.renew_deadline)
            )
        except Exception as exc:  # the client raises its own types for connection trouble
            log.warning(
                "leader election: could not release lease %s (%s: %s); it expires after %g s",
                self.options.name,
                type(exc).__name__,
                exc,
                self.options.lease_seconds,
            )

    async def _give_up(self) -> None:
        lease = await self.kube.request("GET", self._path)
        spec = _lease_spec(lease)
        if spec.get("holderIdentity") != self.options.identity:
            return
        now = _now_micro()
        lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now}
        await self.kube.request("PUT", self._path, body=lease)
        log.info("leader election: %s released lease %s", self.options.identity, self.options.name)


# --- command line -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("leader election (safe with several replicas)")
    group.add_argument(
        "--leader-elect",
        action="store_true",
        help="reconcile only while holding a coordination.k8s.io Lease; standbys keep watching",
    )
    group.add_argument("--leader-elect-name", default="telechat-operator", help="name of the Lease")
    group.add_argument(
        "--leader-elect-namespace",
        default=None,
        help="namespace of the Lease (default: $POD_NAMESPACE, the in-cluster namespace, or default)",
    )
    group.add_argument("--leader-elect-identity", default=None, help="default: <hostname>_<random>")
    group.add_argument("--leader-elect-lease-seconds", type=float, default=15.0)
    group.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    group.add_argument("--leader-elect-retry-period", type=float, default=2.0)


def default_namespace(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def options_from_args(args: argparse.Namespace) -> LeaseOptions:
    return LeaseOptions(
        name=args.leader_elect_name,
        namespace=args.leader_elect_namespace or default_namespace(),
        identity=args.leader_elect_identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        lease_seconds=args.leader_elect_lease_seconds,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
    )
