"""The status subresource, for any kind: what a reconcile derived, and the one writer of status.

A kind derives a ``Derived`` (phase, conditions and its own figures) from what it observed, builds its typed
status model from it, and hands that to ``StatusWriter.write``. The writer compares with the stored status,
merge-patches only on change (null for fields no longer reported), remembers the write until the watch
delivers it, and posts an Event for each condition transition the kind's policy names.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..api.spec import SpecModel
from ..api.status import Condition
from ..kube import Kube
from .cache import ObservedState
from .conditions import Cond, merge_conditions, now_rfc3339, transitions
from .events import object_event

FiguresT = TypeVar("FiguresT")

# (condition as written, the previous (status, reason) of that type or None) -> Event type or None.
EventPolicy = Callable[[dict[str, Any], tuple[str, str] | None], str | None]


@dataclass
class Outcome:
    """What one reconcile did (tests and benchmarks read it)."""

    applied: int = 0
    deleted: int = 0
    status_written: bool = False
    requeue_after: float | None = None


@dataclass
class Derived(Generic[FiguresT]):
    """What status derivation found: a phase, the conditions, and the kind's own figures."""

    phase: str
    conditions: list[Cond]
    figures: FiguresT


def conditions_for(previous: dict[str, Any], new: list[Cond], generation: int | None) -> list[Condition]:
    """Typed conditions, keeping each lastTransitionTime whose status did not change."""
    merged = merge_conditions(previous.get("conditions") or [], new, now_rfc3339(), generation)
    return [Condition.model_validate(item) for item in merged]


def carried(previous: dict[str, Any], model: type[SpecModel], fields: tuple[str, ...]) -> dict[str, Any]:
    """Fields of the previous status (by Python name) to report again, e.g. while the spec is invalid."""
    out: dict[str, Any] = {}
    for name in fields:
        alias = model.model_fields[name].alias or name
        if previous.get(alias) is not None:
            out[name] = previous[alias]
    return out


def status_dict(status: SpecModel) -> dict[str, Any]:
    """The status as stored: camelCase, unset fields left out."""
    return status.model_dump(by_alias=True, exclude_none=True)


class StatusWriter:
    """Writes one kind's status and posts its Events (one field manager, writes only on change)."""

    def __init__(self, kube: Kube, state: ObservedState, kind: str, event_policy: EventPolicy) -> None:
        self.kube = kube
        self.state = state
        self.kind = kind
        self.event_policy = event_policy
        self._instance = socket.gethostname()

    async def write(self, body: dict[str, Any], status: SpecModel, outcome: Outcome) -> None:
        previous = body.get("status") or {}
        new = status_dict(status)
        if new == previous:
            return
        meta = body["metadata"]
        # Fields we no longer report are removed by setting them to null in the merge patch.
        patch: dict[str, Any] = dict(new)
        for stale in set(previous) - set(new):
            patch[stale] = None
        result = await self.kube.patch_status(self.kind, meta["namespace"], meta["name"], patch)
        self.state.wrote_owner(meta["namespace"], meta["name"], result)
        outcome.status_written = True
        before_conditions = previous.get("conditions") or []
        before = {x.get("type"): (x.get("status"), x.get("reason")) for x in before_conditions}
        for cond in transitions(before_conditions, new.get("conditions") or []):
            event_type = self.event_policy(cond, before.get(cond["type"]))
            if event_type is not None:
                text = f"{cond['type']}={cond['status']}"
                message = f"{text}: {cond['message']}" if cond["message"] else text
                await self.event(body, event_type, cond["reason"], message)

    async def event(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        await self.kube.post_event(
            object_event(body, self.kind, event_type, reason, message, self._instance, now_rfc3339())
        )
