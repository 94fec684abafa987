"""Kubernetes-style conditions: lastTransitionTime changes only when status changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Cond:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def merge_conditions(
    previous: list[dict[str, Any]], new: list[Cond], now: str, generation: int | None
) -> list[dict[str, Any]]:
    """New conditions as dicts, keeping each previous lastTransitionTime whose status did not change."""
    before = {c.get("type"): c for c in previous or []}
    merged = []
    for cond in new:
        old = before.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        item: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:8000],
            "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime", now),
        }
        if generation is not None:
            item["observedGeneration"] = generation
        merged.append(item)
    return merged


def transitions(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conditions whose status or reason changed (each becomes a Kubernetes Event)."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in previous or []}
    return [c for c in current if before.get(c["type"]) != (c["status"], c["reason"])]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
