"""The driver's view of one namespace: when each resource's milestones were first seen, from watches.

Both the operator and the floor are timed by this same code, so any delay of the driver's own watches is
in both figures alike. Times are ``time.perf_counter()`` of the driver process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telechat_operator.api import constants as c

from .kubeapi import Api

CHILD_KINDS = ("ConfigMap", "Service", "Deployment")


def _instance(obj: dict[str, Any]) -> str | None:
    return (obj.get("metadata", {}).get("labels") or {}).get(c.LABEL_INSTANCE)


def _cond(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


@dataclass
class Owner:
    """What the driver has seen of one TeleChatDeployment and its children."""

    children: set[str] = field(default_factory=set)
    generation: int = 0
    # milestone name -> first time seen; milestones carry the generation they are about, e.g. "ready@2".
    first: dict[str, float] = field(default_factory=dict)

    def mark(self, milestone: str, now: float) -> None:
        self.first.setdefault(milestone, now)


class Tracker:
    """Watches TeleChatDeployments, children and pods of one namespace and records milestones."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.ns = namespace
        self.owners: dict[str, Owner] = defaultdict(Owner)
        self.tasks: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()
        self.events = 0

    async def start(self) -> None:
        selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
        watches: list[tuple[str, str | None, Callable[[str, dict[str, Any], float], None]]] = [
            (f"/apis/{c.API_VERSION}/namespaces/{self.ns}/{c.PLURAL}", None, self._owner),
            (f"/api/v1/namespaces/{self.ns}/configmaps", selector, self._child),
            (f"/api/v1/namespaces/{self.ns}/services", selector, self._child),
            (f"/apis/apps/v1/namespaces/{self.ns}/deployments", selector, self._child),
            (f"/api/v1/namespaces/{self.ns}/pods", selector, self._pod),
        ]
        synced = [asyncio.Event() for _ in watches]
        for (path, sel, handler), ev in zip(watches, synced, strict=True):
            self.tasks.append(asyncio.create_task(self._run(path, sel, handler, ev)))
        waiting: asyncio.Future[Any] = asyncio.gather(*(e.wait() for e in synced))
        pending: list[asyncio.Future[Any]] = [waiting, *self.tasks]
        done, _ = await asyncio.wait(pending, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            failed = [t.exception() for t in self.tasks if t.done() and not t.cancelled()]
            raise RuntimeError(f"the driver's watches did not start: {failed or 'timed out after 60 s'}")

    async def _run(
        self,
        path: str,
        selector: str | None,
        handler: Callable[[str, dict[str, Any], float], None],
        synced: asyncio.Event,
    ) -> None:
        async for kind, obj in self.api.list_watch(path, selector, on_synced=synced.set):
            handler(kind, obj, time.perf_counter())
            self.events += 1
            self.changed.set()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- handlers ------------------------------------------------------------------------------------
    def _owner(self, kind: str, obj: dict[str, Any], now: float) -> None:
        if kind == "DELETED":
            return
        meta = obj["metadata"]
        owner = self.owners[meta["name"]]
        gen = int(meta.get("generation") or 0)
        owner.generation = max(owner.generation, gen)
        status = obj.get("status") or {}
        if status.get("observedGeneration") == gen:
            owner.mark(f"status@{gen}", now)
            ready = _cond(obj, "Ready")
            if ready and ready.get("status") == "True":
                owner.mark(f"ready@{gen}", now)

    def _child(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name = _instance(obj)
        if name is None or kind == "DELETED":
            return
        owner = self.owners[name]
        owner.children.add(obj["kind"])
        if all(k in owner.children for k in CHILD_KINDS):
            owner.mark("children", now)
        if obj["kind"] == "Deployment":
            meta, status = obj["metadata"], obj.get("status") or {}
            replicas = (obj.get("spec") or {}).get("replicas", 1)
            current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
            if (
                current
                and status.get("readyReplicas", 0) >= replicas
                and status.get("replicas", 0) == replicas
            ):
                owner.mark(f"deployment-ready@{meta.get('generation')}", now)

    def _pod(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name = _instance(obj)
        if name is None or kind == "DELETED":
            return
        ready = _cond(obj, "Ready")
        if ready and ready.get("status") == "True":
            self.owners[name].mark("pod-ready", now)

    # --- waiting ---------------------------------------------------------------------------------------
    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for task in self.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"a watch of the driver failed: {task.exception()!r}")
            self.changed.clear()  # before testing, so an event in between is not missed
            if predicate():
                return
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))

    def reached(self, names: list[str], milestone: str) -> int:
        return sum(1 for n in names if milestone in self.owners[n].first)

    def all_reached(self, names: list[str], *milestones: str) -> bool:
        return all(m in self.owners[n].first for n in names for m in milestones)

    def latest(self, names: list[str], milestone: str) -> float:
        return max(self.owners[n].first[milestone] for n in names)
