"""Proposed operator fixes, applied by monkeypatching inside the benchmark's operator process only.

``python -m bench.run --experiment children-index,async-handlers,...`` (default for full runs: all of them)
runs the largest burst once more with these patches, so each proposal in docs/benchmarks.md comes with a
measured effect. Nothing here changes the operator's code: the patches live in the benchmark and are
applied by bench.opproc when TELECHAT_BENCH_EXPERIMENTS names them.

- children-index: ``ObservedState.children`` scans every object the operator ever wrote (until the watch
  catches up) on each call; at a burst that is O(resources) per reconcile. Index the written objects by
  owner instead.
- async-handlers: the kopf index and event handlers are plain functions, so kopf runs each call in a
  thread pool (a thread hop and a GIL hand-off per event). They are cheap and never block: make them
  ``async def`` so they run on the event loop.
- shallow-snapshot: the index handlers deep-copy every watched object; the event's body is a fresh dict
  from the JSON decoder that nothing mutates, so a shallow copy without managedFields is enough.
- quiet-handler-logs: kopf logs "Handler ... succeeded." at INFO for every event handler call (nine
  lines per created resource); keep kopf.objects at WARNING unless --verbose.
- no-netrc: the official client's aiohttp session trusts the environment, so aiohttp looks up ~/.netrc
  for every request, in a thread (run_in_executor). Create the operator's session with trust_env=False.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ALL = ("children-index", "async-handlers", "shallow-snapshot", "quiet-handler-logs", "no-netrc")


def apply(names: Iterable[str]) -> list[str]:
    applied = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name not in ALL:
            raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(ALL)}")
        PATCHES[name]()
        applied.append(name)
    return applied


def _children_index() -> None:
    from telechat_operator.controller import cache

    state = cache.ObservedState
    original_init = state.__init__
    original_forget = state.forget

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._by_owner = {}

    def wrote(self: Any, ns: str, owner: str, obj: dict[str, Any]) -> None:
        kept = cache.snapshot(obj)
        kept["_owner"] = owner
        key = (obj["kind"], obj["metadata"]["name"])
        self._written[(ns, *key)] = kept
        self._by_owner.setdefault((ns, owner), {})[key] = kept

    def children(self: Any, ns: str, owner: str) -> dict[Any, dict[str, Any]]:
        found: dict[Any, dict[str, Any]] = {}
        for index_name in self.child_indices:
            for item in self.indices[index_name].get((ns, owner)) or []:
                obj = dict(item)
                found[(obj["kind"], obj["metadata"]["name"])] = obj
        mine = self._by_owner.get((ns, owner))
        for key, obj in list((mine or {}).items()):
            newest = cache._newer(found.get(key), obj)
            if newest is found.get(key):
                del mine[key]
                self._written.pop((ns, *key), None)
            elif newest is not None:
                found[key] = newest
        if mine is not None and not mine:
            del self._by_owner[(ns, owner)]
        return found

    def forget(self: Any, ns: str, name: str) -> None:
        original_forget(self, ns, name)
        self._by_owner.pop((ns, name), None)

    state.__init__ = __init__  # type: ignore[method-assign]
    state.wrote = wrote  # type: ignore[method-assign]
    state.children = children  # type: ignore[method-assign]
    state.forget = forget  # type: ignore[method-assign]


def _asyncify(fn: Callable[..., Any]) -> Callable[..., Any]:
    # Not functools.wraps: kopf follows __wrapped__ to decide whether a handler is async.
    async def handler(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    handler.__name__, handler.__qualname__ = fn.__name__, fn.__qualname__
    return handler


def _async_handlers() -> None:
    from telechat_operator import handlers

    original = handlers.build_registry

    def build_registry(rt: Any) -> Any:
        registry = original(rt)
        for sub in (registry._indexing, registry._watching):
            for handler in sub.get_all_handlers():
                if not inspect.iscoroutinefunction(handler.fn):
                    object.__setattr__(handler, "fn", _asyncify(handler.fn))  # a frozen dataclass
        return registry

    handlers.build_registry = build_registry


def _shallow_snapshot() -> None:
    from telechat_operator import handlers
    from telechat_operator.controller import cache

    def snapshot(
        body: Mapping[str, Any], keep: Iterable[str] = ("metadata", "spec", "status", "data")
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind")}
        for field in keep:
            if field in body:
                value = body[field]
                out[field] = dict(value) if isinstance(value, Mapping) else value
        meta = out.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        return out

    cache.snapshot = snapshot
    handlers.snapshot = snapshot  # type: ignore[attr-defined]


def _quiet_handler_logs() -> None:
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # kopf.configure() (called by the CLI) resets levels on its own loggers; keep ours after it.
    import kopf

    original = kopf.configure

    def configure(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)

    kopf.configure = configure


def _no_netrc() -> None:
    from telechat_operator import kube

    original = kube.Kube.connect.__func__  # type: ignore[attr-defined]

    async def connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
        client = await original(cls, *args, **kwargs)
        # Read when the aiohttp session is made, at the first request.
        client.api.configuration.client_session_kwargs = {"trust_env": False}
        return client

    kube.Kube.connect = classmethod(connect)  # type: ignore[method-assign, assignment]


PATCHES: dict[str, Callable[[], None]] = {
    "children-index": _children_index,
    "async-handlers": _async_handlers,
    "shallow-snapshot": _shallow_snapshot,
    "quiet-handler-logs": _quiet_handler_logs,
    "no-netrc": _no_netrc,
}
