"""A small async Kubernetes client for the few calls the reconciler makes, on the official client.

Objects are plain dicts (what the renderer produces). Writes are server-side apply with one field manager,
status patches and Events; reads come from kopf's watch-fed indices, so an idle resync makes no calls.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config

from .api import constants as c

log = logging.getLogger(__name__)

# kind -> (API path prefix, plural). Only the kinds the operator writes or reads directly.
_RESOURCES: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Secret": ("/api/v1", "secrets"),
    "Event": ("/api/v1", "events"),
    "Pod": ("/api/v1", "pods"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Job": ("/apis/batch/v1", "jobs"),
    c.KIND: (f"/apis/{c.API_VERSION}", c.PLURAL),
    c.BATCH_KIND: (f"/apis/{c.API_VERSION}", c.BATCH_PLURAL),
}


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: dict[str, Any] | None):
        self.status = status
        self.reason = reason
        self.body = body or {}
        super().__init__(f"{status} {reason}: {self.message}")

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.reason)


def resource_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural = _RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class Kube:
    """Thin async wrapper: get, apply, patch status, post Events."""

    def __init__(self, api: aio_client.ApiClient, field_manager: str = c.FIELD_MANAGER):
        self.api = api
        self.field_manager = field_manager
        # Counted for the benchmarks and for tests that assert an idle resync writes nothing.
        self.writes = 0
        self.reads = 0

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        configuration = aio_client.Configuration()
        try:
            aio_config.load_incluster_config(client_configuration=configuration)
        except aio_config.ConfigException:
            await aio_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 64
        return cls(aio_client.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if method == "GET":
            self.reads += 1
        else:
            self.writes += 1
        serialized = await self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = await self.api.call_api(*serialized)
        raw = await response.read()
        data: dict[str, Any] = json.loads(raw) if raw else {}
        if response.status >= 400:
            raise ApiError(response.status, response.reason or "", data)
        return data

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", resource_path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; force=true because the operator alone owns the fields it renders."""
        meta = obj["metadata"]
        path = resource_path(obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", self.field_manager), ("force", "true")]
        return await self.request(
            "PATCH", path, body=obj, query=query, content_type="application/apply-patch+yaml"
        )

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (replaces the conditions list as a whole)."""
        path = resource_path(kind, namespace, name, "status")
        return await self.request(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", resource_path(kind, namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def post_event(self, event: dict[str, Any]) -> None:
        namespace = event["metadata"]["namespace"]
        try:
            await self.request("POST", resource_path("Event", namespace), body=event)
        except ApiError as exc:  # Events are best effort; never fail a reconcile for one.
            log.warning("could not post event %s: %s", event.get("reason"), exc)
