"""Proposed operator fixes, applied by monkeypatching inside the benchmark's operator process only.

``python -m bench.run --experiment children-index,async-handlers,...`` (default for full runs: all of them)
runs the largest burst once more with these patches, so each proposal in docs/benchmarks.md comes with a
measured effect. Nothing here changes the operator's code: the patches live in the benchmark and are
applied by bench.opproc when TELECHAT_BENCH_EXPERIMENTS names them.

- shallow-snapshot: the index handlers deep-copy every watched object; the event's body is a fresh dict
  from the JSON decoder that nothing mutates, so a shallow copy without managedFields is enough.
- no-netrc: the official client's aiohttp session trusts the environment, so aiohttp looks up ~/.netrc
  for every request, in a thread (run_in_executor). Create the operator's session with trust_env=False.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# children-index, async-handlers and quiet-handler-logs were measured here first and are now in the operator.
ALL = ("shallow-snapshot", "no-netrc")


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


def _shallow_snapshot() -> None:
    from telechat_operator.controller import cache, registry

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
    setattr(registry, "snapshot", snapshot)  # noqa: B010  (the registry module's own import of it)


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
    "shallow-snapshot": _shallow_snapshot,
    "no-netrc": _no_netrc,
}
