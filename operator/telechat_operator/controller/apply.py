"""Bring a resource's children to what was rendered: plan against observed state, apply, prune.

Server-side apply with the operator's one field manager, only for objects that differ from what the
cluster has. A write the API server refuses for good (an immutable field, a quota, admission) is
reported and retried at the next resync instead of hot-looping; server errors and throttling raise, so
the work queue retries with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..kube import ApiError, Kube
from .cache import ObservedState
from .plan import ObjectKey, plan
from .status import Outcome


@dataclass
class Applied:
    """The API server's answer for each object written, and the last refusal (None when all went in)."""

    results: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ChildWriter:
    """How one kind writes its children; ``sync`` brings one owner's children to what was rendered.

    ``prunable``: kinds deleted when no longer rendered (a dropped cache PVC). ``stop_at_refusal``: objects
    later in the list depend on earlier ones (a Job mounting its ConfigMap).
    """

    kube: Kube
    state: ObservedState
    retry_after: float
    prunable: frozenset[str] = frozenset()
    stop_at_refusal: bool = False

    async def sync(self, ns: str, owner: str, desired: list[dict[str, Any]], outcome: Outcome) -> Applied:
        """Apply what is missing or differs (in order); prune owned objects no longer rendered."""
        todo = plan(desired, self.state.children(ns, owner))
        applied = Applied()
        for obj in todo.apply:
            try:
                result = await self.kube.apply(obj)
            except ApiError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise
                applied.error = f"{obj['kind']} {obj['metadata']['name']}: {exc.message}"
                outcome.requeue_after = self.retry_after
                if self.stop_at_refusal:
                    return applied
                continue
            self.state.wrote(ns, owner, result)
            applied.results[(obj["kind"], obj["metadata"]["name"])] = result
            outcome.applied += 1
        for kind, child in todo.delete:
            if kind in self.prunable:
                await self.kube.delete(kind, ns, child)
                outcome.deleted += 1
        return applied
