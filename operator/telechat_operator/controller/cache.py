"""What the operator knows of the cluster: kopf's watch-fed indices plus its own most recent writes.

Reading from indices means a resync costs no API calls. A write's response is kept until the watch
delivers that version (or a newer one), so a reconcile right after a write does not see stale state and
write the same thing again.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .plan import ObjectKey

NamespacedName = tuple[str, str]


class IndexLike(Protocol):
    def get(self, key: Any, default: Any = None) -> Any: ...


def snapshot(
    body: Mapping[str, Any], keep: Iterable[str] = ("metadata", "spec", "status", "data")
) -> dict[str, Any]:
    """A plain copy of a watched object without managedFields (memory, and they are never compared)."""
    out: dict[str, Any] = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind")}
    for field in keep:
        if field in body:
            out[field] = copy.deepcopy(dict(body[field]) if isinstance(body[field], Mapping) else body[field])
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def controller_owner(body: Mapping[str, Any], kind: str) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return str(ref.get("name"))
    return None


def _rv(obj: Mapping[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def _newer(indexed: dict[str, Any] | None, written: dict[str, Any] | None) -> dict[str, Any] | None:
    if written is None:
        return indexed
    if indexed is None:
        return written
    return indexed if _rv(indexed) >= _rv(written) else written


def _first(store: Any) -> dict[str, Any] | None:
    if store is None:
        return None
    for item in store:
        return dict(item)
    return None


class ObservedState:
    """Owners, children and pods by owner, from kopf indices (names given at construction)."""

    def __init__(
        self,
        indices: Mapping[str, IndexLike],
        owner_index: str,
        child_indices: Iterable[str],
        pod_index: str,
        node_index: str | None = None,
    ) -> None:
        self.indices = indices
        self.owner_index = owner_index
        self.child_indices = tuple(child_indices)
        self.pod_index = pod_index
        self.node_index = node_index
        # Our last writes, until the watch delivers them: the owners' status, and per owner its children
        # by (kind, name). Keyed by owner so a reconcile looks only at its own (a burst stays linear).
        self._written_owner: dict[NamespacedName, dict[str, Any]] = {}
        self._written: dict[NamespacedName, dict[ObjectKey, dict[str, Any]]] = {}

    def owner(self, ns: str, name: str) -> dict[str, Any] | None:
        indexed = _first(self.indices[self.owner_index].get((ns, name)))
        newest = _newer(indexed, self._written_owner.get((ns, name)))
        if newest is indexed:
            self._written_owner.pop((ns, name), None)
        return newest

    def children(self, ns: str, owner: str) -> dict[ObjectKey, dict[str, Any]]:
        found: dict[ObjectKey, dict[str, Any]] = {}
        for index_name in self.child_indices:
            for item in self.indices[index_name].get((ns, owner)) or []:
                obj = dict(item)
                found[(obj["kind"], obj["metadata"]["name"])] = obj
        written = self._written.get((ns, owner), {})
        for key, obj in list(written.items()):
            newest = _newer(found.get(key), obj)
            if newest is found.get(key):
                # The watch caught up: drop our copy to keep memory bounded.
                del written[key]
            elif newest is not None:
                found[key] = newest
        if not written:
            self._written.pop((ns, owner), None)
        return found

    def pods(self, ns: str, owner: str, component: str) -> list[dict[str, Any]]:
        return [dict(p) for p in self.indices[self.pod_index].get((ns, owner, component)) or []]

    def largest_node_gpus(self, resource: str) -> int | None:
        if self.node_index is None:
            return None
        store = self.indices[self.node_index].get(resource)
        if store is None:
            return 0
        return max((int(n) for n in store), default=0)

    def wrote(self, ns: str, owner: str, obj: dict[str, Any]) -> None:
        self._written.setdefault((ns, owner), {})[(obj["kind"], obj["metadata"]["name"])] = snapshot(obj)

    def wrote_owner(self, ns: str, name: str, obj: dict[str, Any]) -> None:
        self._written_owner[(ns, name)] = snapshot(obj)

    def forget(self, ns: str, name: str) -> None:
        self._written.pop((ns, name), None)
        self._written_owner.pop((ns, name), None)
