"""The floor: the same writes as the operator, done as directly as a script can, with the same client.

    python -m bench.floor --kubeconfig K --namespace NS --ready-file F [--concurrency 8]

It lists and watches TeleChatDeployments and their Deployments in one namespace and, for each resource:

- checks and renders it with the operator's own functions (``check_deployment``, which is
  ``validation.check``, and ``render_deployment_set``), so the objects are byte-for-byte the operator's;
- server-side applies each rendered object that differs from what it last applied itself (the same
  ``Kube.apply`` the operator uses: same client library, same field manager, same request);
- writes the status the operator would write (the operator's own status derivation) whenever it changes,
  with the same merge patch.

What it leaves out is what the floor measures the operator against: kopf, the watch-fed indices and their
snapshots, the work queue, planning against observed state, pod observation, Events, resync. Reconciles
run at most ``--concurrency`` at once (default: the operator's worker count), one at a time per resource.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from telechat_operator.api import constants as c
from telechat_operator.config import OperatorConfig
from telechat_operator.controller.cache import controller_owner
from telechat_operator.controller.status import status_dict
from telechat_operator.deployment.observe import Observation, derive
from telechat_operator.deployment.reconciler import check_deployment
from telechat_operator.deployment.render import render_deployment_set
from telechat_operator.deployment.status import desired_status
from telechat_operator.kube import Kube
from telechat_operator.render import Owner
from telechat_operator.validation import SpecError

from .kubeapi import Api

log = logging.getLogger("bench.floor")
Key = tuple[str, str]


def _rv(obj: dict[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class Floor:
    def __init__(self, kube: Kube, config: OperatorConfig, concurrency: int) -> None:
        self.kube = kube
        self.config = config
        self.owners: dict[Key, dict[str, Any]] = {}
        self.deployments: dict[Key, dict[str, Any]] = {}
        self.applied: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.status: dict[Key, dict[str, Any]] = {}
        self.done: dict[Key, tuple[Any, int]] = {}  # (generation, deployment rv) last synced
        self.running: set[Key] = set()
        self.dirty: set[Key] = set()
        self.slots = asyncio.Semaphore(concurrency)
        self.stats: dict[str, int] = {"syncs": 0, "applies": 0, "status_writes": 0, "errors": 0}
        self.tasks: set[asyncio.Task[None]] = set()

    def owner_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self.owners.pop(key, None)
            self.status.pop(key, None)
            self.done.pop(key, None)
            return
        if _rv(obj) >= _rv(self.owners.get(key)):
            self.owners[key] = obj
        self.schedule(key)

    def deployment_event(self, kind: str, obj: dict[str, Any]) -> None:
        owner = controller_owner(obj, c.KIND)
        if not owner or kind == "DELETED":
            return
        key = (obj["metadata"]["namespace"], owner)
        if _rv(obj) >= _rv(self.deployments.get(key)):
            self.deployments[key] = obj
        self.schedule(key)

    def schedule(self, key: Key) -> None:
        if key in self.running:
            self.dirty.add(key)
            return
        self.running.add(key)
        task = asyncio.create_task(self._run(key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, key: Key) -> None:
        try:
            while True:
                async with self.slots:
                    try:
                        await self.sync(key)
                    except Exception as exc:  # a floor does not retry cleverly; it reports and goes on
                        self.stats["errors"] += 1
                        log.warning("sync %s failed: %s", key, exc)
                if key not in self.dirty:
                    return
                self.dirty.discard(key)
        finally:
            self.running.discard(key)

    async def sync(self, key: Key) -> None:
        body = self.owners.get(key)
        if body is None:
            return
        meta = body["metadata"]
        marker = (meta.get("generation"), _rv(self.deployments.get(key)))
        if self.done.get(key) == marker:
            return  # our own status write, or nothing that changes what we write
        self.stats["syncs"] += 1
        ns, name = key
        try:
            checked = check_deployment(body.get("spec"), self.config)
        except SpecError:
            return
        spec, eff = checked.spec, checked.effective
        rendered = render_deployment_set(spec, eff, Owner(c.API_VERSION, c.KIND, name, ns, meta["uid"]))
        for obj in rendered.objects:
            okey = (ns, obj["kind"], obj["metadata"]["name"])
            if self.applied.get(okey) == obj:
                continue
            result = await self.kube.apply(obj)
            self.stats["applies"] += 1
            self.applied[okey] = obj
            if obj["kind"] == "Deployment" and _rv(result) > _rv(self.deployments.get(key)):
                self.deployments[key] = result
        # One snapshot for both the status and the "synced" marker: a newer Deployment arriving while the
        # status is written makes the next pass run again.
        deployment = self.deployments.get(key)
        obs = Observation(
            generation=meta.get("generation"),
            desired_replicas=spec.replicas,
            deployment=deployment,
            pods=[],
            notes=checked.notes,
            gpu_resource=spec.resources.gpu_resource_name,
            gpus_per_replica=eff.gpus_per_replica,
        )
        previous = self.status.get(key, body.get("status") or {})
        # The operator's own pure status derivation and typed status.
        derived = derive(obs)
        typed = desired_status(
            {"metadata": meta, "status": previous}, derived, obs.generation, spec.replicas, checked
        )
        status = status_dict(typed)
        if any(previous.get(k) != v for k, v in status.items()):
            await self.kube.patch_status(c.KIND, ns, name, status)
            self.stats["status_writes"] += 1
            self.status[key] = status
        self.done[key] = (meta.get("generation"), _rv(deployment))


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def _watch(api: Api, path: str, selector: str | None, handle: Any, synced: asyncio.Event) -> None:
    async for kind, obj in api.list_watch(path, selector, on_synced=synced.set):
        handle(kind, obj)


async def amain(opts: argparse.Namespace) -> None:
    os.environ["KUBECONFIG"] = opts.kubeconfig
    config = OperatorConfig.load({})
    kube = await Kube.connect(opts.kubeconfig)
    api = await Api.connect(opts.kubeconfig, "telechat-bench-floor/watch")
    floor = Floor(kube, config, opts.concurrency)
    ns = opts.namespace
    selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
    synced = [asyncio.Event(), asyncio.Event()]
    watches = [
        asyncio.create_task(
            _watch(
                api, f"/apis/{c.API_VERSION}/namespaces/{ns}/{c.PLURAL}", None, floor.owner_event, synced[0]
            )
        ),
        asyncio.create_task(
            _watch(
                api, f"/apis/apps/v1/namespaces/{ns}/deployments", selector, floor.deployment_event, synced[1]
            )
        ),
    ]
    await asyncio.gather(*(s.wait() for s in synced))
    Path(opts.ready_file).write_text("ready\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if opts.stats:
        stats_path = Path(opts.stats)
        loop.add_signal_handler(
            signal.SIGUSR1,
            lambda: _write(
                stats_path, dict(floor.stats, writes=kube.writes, reads=kube.reads, time=time.time())
            ),
        )
    while not stop.is_set():
        if opts.stats:
            data = dict(floor.stats, writes=kube.writes, reads=kube.reads, time=time.time())
            _write(Path(opts.stats), data)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for task in watches:
        task.cancel()
    await asyncio.gather(*watches, return_exceptions=True)
    if opts.stats:
        data = dict(floor.stats, writes=kube.writes, reads=kube.reads, time=time.time())
        _write(Path(opts.stats), data)
    await api.close()
    await kube.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--stats", default=None)
    parser.add_argument("--concurrency", type=int, default=OperatorConfig().workers)
    opts = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s floor %(levelname)s %(message)s")
    asyncio.run(amain(opts))


if __name__ == "__main__":
    main()
