"""A small async API client for the benchmark driver and the floor, on the official client's aio package.

Every request is counted under the key the API server's ``apiserver_request_total`` metric uses
(verb, resource, subresource), so the driver can subtract its own requests from the server's counts.
Watches are plain streaming GETs (list, then watch from the list's resourceVersion).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config

log = logging.getLogger(__name__)

RequestKey = tuple[str, str, str]  # (verb as the metric names it, resource, subresource)

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)"
    r"(?:/namespaces/(?P<ns>[^/]+))?"
    r"(?:/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?)?$"
)


def classify(method: str, path: str, query: dict[str, str], content_type: str) -> RequestKey:
    """The (verb, resource, subresource) labels the API server gives this request in its metrics."""
    m = _PATH.match(path.split("?", 1)[0])
    if m is None:
        return (method, "", "")
    resource, name, sub = m.group("resource") or "", m.group("name"), m.group("sub") or ""
    if m.group("ns") and not resource:
        resource, name = "namespaces", m.group("ns")
    if method == "GET":
        watch = query.get("watch") in ("true", "1")
        verb = "WATCH" if watch else ("GET" if name else "LIST")
    elif method == "PATCH" and content_type == "application/apply-patch+yaml":
        verb = "APPLY"
    elif method == "DELETE" and not name:
        verb = "DELETECOLLECTION"
    else:
        verb = method
    return (verb, resource, sub)


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:300]}")
        self.status = status


class Api:
    """Raw JSON requests with per-(verb, resource, subresource) counts of what this client sent."""

    def __init__(self, api: aio_client.ApiClient) -> None:
        self.api = api
        self.counts: Counter[RequestKey] = Counter()

    @classmethod
    async def connect(cls, kubeconfig: str, user_agent: str, pool: int = 64) -> Api:
        configuration = aio_client.Configuration()
        await aio_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = pool
        api = aio_client.ApiClient(configuration=configuration)
        api.user_agent = user_agent
        return cls(api)

    async def close(self) -> None:
        await self.api.close()

    async def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: dict[str, str] | None,
        content_type: str,
        timeout: float | None,
    ) -> Any:
        query = query or {}
        self.counts[classify(method, path, query, content_type)] += 1
        serialized = await self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()),
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        return await self.api.call_api(*serialized, _request_timeout=timeout)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        ok_missing: bool = False,
    ) -> dict[str, Any] | None:
        response = await self._send(method, path, body, query, content_type, None)
        raw = await response.read()
        if response.status == 404 and ok_missing:
            return None
        if response.status >= 400:
            raise ApiError(response.status, raw.decode(errors="replace"))
        data: dict[str, Any] = json.loads(raw) if raw else {}
        return data

    async def text(self, path: str) -> str:
        """A non-resource GET (e.g. /metrics), returned as text."""
        response = await self._send("GET", path, None, None, "application/json", None)
        raw = await response.read()
        if response.status >= 400:
            raise ApiError(response.status, raw.decode(errors="replace"))
        return str(raw.decode())

    async def list_watch(  # noqa: C901  (one list-then-watch loop; split, it reads worse)
        self,
        path: str,
        label_selector: str | None = None,
        on_synced: Callable[[], None] | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield ("ADDED"|"MODIFIED"|"DELETED", object): the current list first, then changes, forever.

        ``on_synced`` is called once the initial list has been yielded. A watch the server ends is resumed
        from the last resourceVersion seen; a 410 Gone starts over with a fresh list.
        """
        base: dict[str, str] = {}
        if label_selector:
            base["labelSelector"] = label_selector
        synced = False
        while True:
            try:
                listed = await self.request("GET", path, query=dict(base))
            except ApiError as exc:
                # A CRD that was just established answers 429 "storage is (re)initializing" for a moment.
                if exc.status in (429, 500, 503, 504):
                    await asyncio.sleep(1.0)
                    continue
                raise
            assert listed is not None
            kind = listed.get("kind", "").removesuffix("List")
            for item in listed.get("items") or []:
                item.setdefault("kind", kind)
                yield "ADDED", item
            rv = listed["metadata"]["resourceVersion"]
            if not synced and on_synced is not None:
                on_synced()
            synced = True
            while True:
                query = dict(base, watch="true", resourceVersion=rv, allowWatchBookmarks="true")
                query["timeoutSeconds"] = "600"
                response = await self._send("GET", path, None, query, "application/json", 700)
                if response.status >= 400:
                    raw = await response.read()
                    raise ApiError(response.status, raw.decode(errors="replace"))
                gone = False
                try:
                    async for line in response.response.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind_, obj = event.get("type"), event.get("object") or {}
                        if kind_ == "ERROR":
                            gone = obj.get("code") == 410
                            break
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if kind_ == "BOOKMARK":
                            continue
                        yield kind_, obj
                finally:
                    response.response.release()
                if gone:
                    break


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
