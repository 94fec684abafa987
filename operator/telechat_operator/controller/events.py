"""Kubernetes Events about a custom resource, as the reconcilers post them (core/v1 Event objects)."""

from __future__ import annotations

from typing import Any

from ..api import constants as c


def object_event(
    body: dict[str, Any], kind: str, event_type: str, reason: str, message: str, instance: str, now: str
) -> dict[str, Any]:
    """An Event about ``body`` (a resource of ``kind`` in the operator's group); message cut to 1 KiB."""
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": c.API_VERSION,
            "kind": kind,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": c.FIELD_MANAGER},
        "reportingComponent": c.FIELD_MANAGER,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
