"""The measured scenarios: latency trials, bursts (with a spec change and an idle window), per controller.

Each scenario runs once with the floor and once with the operator, in namespaces of their own, timed by
the same driver code (bench.tracker) and counted from the same API server metrics (bench.traffic).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telechat_operator.api import constants as c

from . import traffic
from .cluster import BenchCluster, create_namespace, delete_namespace
from .kubeapi import Api, RequestKey
from .procs import Controller
from .tracker import Tracker

log = logging.getLogger("bench")
MODES = ("floor", "operator")
MIB = 1024 * 1024
MILESTONES = ("children", "status@1", "pod-ready", "deployment-ready@1", "ready@1")


@dataclass
class Settings:
    trials: int
    bursts: list[int]
    spec_change_size: int
    idle_size: int
    resync: float
    idle_window: float
    settle: float
    quiet_for: float
    create_concurrency: int
    workdir: Path
    profile: str | None = None  # profile the operator's largest burst in an extra, untimed run


def tcd(name: str, replicas: int, temperature: float = 0.2) -> dict[str, Any]:
    """The benchmark's resource: TeleChat2-7B, one GPU per replica, no cache volume (three children)."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "Tele-AI/TeleChat2-7B"},
            "replicas": replicas,
            "sampling": {"temperature": temperature},
        },
    }


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        # Nearest-rank on the sorted trials, interpolated (numpy's default "linear").
        k = (len(ordered) - 1) * p
        lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    return {
        "n": len(ordered),
        "p50_ms": round(pct(0.50) * 1000, 1),
        "p95_ms": round(pct(0.95) * 1000, 1),
        "p99_ms": round(pct(0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


class Harness:
    def __init__(self, api: Api, cluster: BenchCluster, settings: Settings) -> None:
        self.api = api
        self.cluster = cluster
        self.s = settings

    # --- building blocks -------------------------------------------------------------------------------
    def path(self, ns: str, name: str | None = None) -> str:
        base = f"/apis/{c.API_VERSION}/namespaces/{ns}/{c.PLURAL}"
        return f"{base}/{name}" if name else base

    async def setup(
        self, mode: str, ns: str, profile: str | None = None, experiments: tuple[str, ...] = ()
    ) -> tuple[Tracker, Controller]:
        await self.quiesce()
        await create_namespace(self.api, ns)
        tracker = Tracker(self.api, ns)
        await tracker.start()
        ctl = Controller(
            mode,
            ns,
            self.cluster.kubeconfig,
            self.s.workdir,
            self.s.resync,
            profile=profile,
            experiments=experiments,
        )
        ctl.start()
        try:
            if mode == "floor":
                await ctl.wait_ready_file()
            # Both are ready once a first resource has its children and status: the controller is watching.
            await self.api.request("POST", self.path(ns), tcd("canary", 0))
            try:
                await tracker.wait(
                    lambda: tracker.all_reached(["canary"], "children", "ready@1"), 90, "canary"
                )
            except TimeoutError:
                raise RuntimeError(f"{mode} did not reconcile the canary:\n{ctl.log_tail()}") from None
        except BaseException:
            await self.teardown(tracker, ctl)
            raise
        return tracker, ctl

    async def teardown(self, tracker: Tracker, ctl: Controller) -> tuple[dict[str, Any], float]:
        stats = await ctl.stop()
        await tracker.stop()
        seconds = await delete_namespace(self.api, tracker.ns)
        return stats, seconds

    async def scrape(self) -> Any:
        return traffic.parse_request_totals(await self.api.text("/metrics"))

    async def quiesce(self, quiet_for: float | None = None, timeout: float = 180.0) -> float:
        """Wait until the cluster is quiet: the garbage collector and namespace controller, busy for a while
        after a namespace with a thousand resources is gone, would otherwise count in the next window.
        Quiet means at most one request a second besides heartbeats (leases, node status, watches)."""
        quiet_for = self.s.quiet_for if quiet_for is None else quiet_for
        loop = asyncio.get_running_loop()
        start = loop.time()
        quiet_since: float | None = None
        before = await self.scrape()
        while loop.time() - start < timeout:
            await asyncio.sleep(1.0)
            after = await self.scrape()
            busy = traffic.busy_requests(before, after)
            before = after
            now = loop.time()
            if busy > 1:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet_for:
                return now - start
        log.warning("the cluster did not quiet down in %g s; measuring anyway", timeout)
        return timeout

    async def operator_events(self, ns: str) -> int:
        return traffic.count_operator_events(await self.api.request("GET", f"/api/v1/namespaces/{ns}/events"))

    async def measure_traffic(
        self, ns: str, resources: int, action: Callable[[], Any], ctl: Controller
    ) -> tuple[dict[str, Any], Any]:
        """Run ``action`` between two scrapes of the server's counters; attribute the difference."""
        await self.quiesce()  # whatever came before (the canary's last Event, GC) lands before the window
        driver_before: Counter[RequestKey] = Counter(self.api.counts)
        before = await self.scrape()
        events_before = await self.operator_events(ns)
        stats_before = await ctl.fresh_stats()
        start = time.perf_counter()
        result = await action()
        # Trailing writes (the status after the last rollout step) land in the window too.
        await asyncio.sleep(self.s.settle)
        events_after = await self.operator_events(ns)
        window = time.perf_counter() - start
        after = await self.scrape()
        driver = Counter(self.api.counts)
        driver.subtract(driver_before)
        report = traffic.attribute(before, after, driver, events_after - events_before, resources, window)
        report["operator_events"] = events_after - events_before
        report["client_side"] = _stats_delta(stats_before, await ctl.fresh_stats())
        return report, result

    async def create_all(self, ns: str, names: list[str], replicas: int) -> float:
        """Create every resource, ``create_concurrency`` requests in flight; returns the seconds it took."""
        start = time.perf_counter()
        queue = list(names)

        async def worker() -> None:
            while queue:
                name = queue.pop(0)
                await self.api.request("POST", self.path(ns), tcd(name, replicas))

        await asyncio.gather(*(worker() for _ in range(self.s.create_concurrency)))
        return time.perf_counter() - start

    async def patch_all(self, ns: str, names: list[str], temperature: float) -> None:
        queue = list(names)
        body = {"spec": {"sampling": {"temperature": temperature}}}

        async def worker() -> None:
            while queue:
                name = queue.pop(0)
                await self.api.request(
                    "PATCH", self.path(ns, name), body, content_type="application/merge-patch+json"
                )

        await asyncio.gather(*(worker() for _ in range(self.s.create_concurrency)))

    # --- latency ---------------------------------------------------------------------------------------
    async def latency(self, mode: str) -> dict[str, Any]:
        ns = f"bench-latency-{mode}"
        tracker, ctl = await self.setup(mode, ns)
        trials: list[dict[str, float]] = []
        try:
            for i in range(self.s.trials):
                name = f"lat-{i:03d}"
                t0 = time.perf_counter()
                await self.api.request("POST", self.path(ns), tcd(name, 1))
                try:

                    def ready(n: str = name) -> bool:
                        return tracker.all_reached([n], *MILESTONES)

                    await tracker.wait(ready, 60, f"{name} Ready")
                except TimeoutError as exc:
                    seen = tracker.owners[name]
                    raise TimeoutError(
                        f"{exc}; seen {sorted(seen.first)}, children {sorted(seen.children)}; {mode} log:\n"
                        + ctl.log_tail()
                    ) from None
                first = tracker.owners[name].first
                trials.append(
                    {
                        "apply_to_children": first["children"] - t0,
                        "apply_to_status": first["status@1"] - t0,
                        "pod_ready_to_ready": first["ready@1"] - first["pod-ready"],
                        "deployment_ready_to_ready": first["ready@1"] - first["deployment-ready@1"],
                        "apply_to_ready": first["ready@1"] - t0,
                    }
                )
                await asyncio.sleep(0.3)  # let the trial's trailing events drain before the next one
        finally:
            stats, _ = await self.teardown(tracker, ctl)
        keys = trials[0].keys() if trials else []
        return {
            "mode": mode,
            "trials": len(trials),
            "summary": {k: percentiles([t[k] for t in trials]) for k in keys},
            "raw_ms": {k: [round(t[k] * 1000, 2) for t in trials] for k in keys},
            "controller": stats,
        }

    # --- burst (+ spec change, + idle) -----------------------------------------------------------------
    async def burst(
        self, mode: str, size: int, profile: str | None = None, experiments: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        ns = (
            f"bench-burst-{size}-{mode}" + ("-profile" if profile else "") + ("-fixes" if experiments else "")
        )
        tracker, ctl = await self.setup(mode, ns, profile=profile, experiments=experiments)
        extra = bool(profile or experiments)  # an extra run: the create burst only
        names = [f"b-{i:04d}" for i in range(size)]
        out: dict[str, Any] = {"mode": mode, "size": size, "experiments": list(experiments)}
        apiserver = _process(self.cluster.pid("kube-apiserver"))
        components = {
            n: _process(self.cluster.pid(n)) for n in ("kube-apiserver", "etcd", "kube-controller-manager")
        }
        components_before = {n: _cpu(p) for n, p in components.items()}
        try:
            rss_before = ctl.rss()
            cpu_before = ctl.cpu_seconds()
            api_cpu_before = _cpu(apiserver)
            marks: dict[str, float] = {}
            timeout = 120 + size * 0.5

            async def create() -> float:
                marks["t0"] = time.perf_counter()
                seconds = await self.create_all(ns, names, 0)
                await tracker.wait(
                    lambda: tracker.all_reached(names, "children", "status@1", "ready@1"), timeout, "burst"
                )
                return seconds

            create_traffic, create_seconds = await self.measure_traffic(ns, size, create, ctl)
            t0 = marks["t0"]
            children = tracker.latest(names, "children") - t0
            status = tracker.latest(names, "status@1") - t0
            ready = tracker.latest(names, "ready@1") - t0
            cpu_at_converged = _cpu_at(ctl, t0 + ready)
            out.update(
                {
                    "create_seconds": round(create_seconds, 3),
                    "all_children_s": round(children, 3),
                    "all_status_s": round(status, 3),
                    "all_ready_s": round(ready, 3),
                    "converged_s": round(max(children, status, ready), 3),
                    "rss_before_mib": round(rss_before / MIB, 1),
                    "peak_rss_mib": round(ctl.peak_rss() / MIB, 1),
                    "rss_after_mib": round(ctl.rss() / MIB, 1),
                    "cpu_s_to_converge": round(cpu_at_converged - cpu_before, 2)
                    if cpu_at_converged is not None
                    else None,
                    "cpu_s_window": round(ctl.cpu_seconds() - cpu_before, 2),
                    "apiserver_cpu_s_window": round(_cpu(apiserver) - api_cpu_before, 2)
                    if apiserver
                    else None,
                    "traffic_create": create_traffic,
                    # The control plane's CPU in the same window: on 2 cores it and the controller share.
                    "cluster_cpu_s_window": {
                        n: round(_cpu(p) - components_before[n], 2) for n, p in components.items() if p
                    },
                    "timeline": _timeline(ctl, t0),
                }
            )
            if size == self.s.spec_change_size and not extra:

                async def change() -> None:
                    marks["t1"] = time.perf_counter()
                    await self.patch_all(ns, names, 0.7)
                    await tracker.wait(lambda: tracker.all_reached(names, "ready@2"), timeout, "spec change")

                out["traffic_spec_change"], _ = await self.measure_traffic(ns, size, change, ctl)
                out["spec_change_ready_s"] = round(tracker.latest(names, "ready@2") - marks["t1"], 3)
            if size == self.s.idle_size and not extra:
                cpu0 = ctl.cpu_seconds()

                async def idle() -> None:
                    await asyncio.sleep(self.s.idle_window)

                # One more resource than the burst: the canary is reconciled by every resync too.
                out["traffic_idle"], _ = await self.measure_traffic(ns, size + 1, idle, ctl)
                out["idle_cpu_s"] = round(ctl.cpu_seconds() - cpu0, 2)
                out["idle_rss_mib"] = round(ctl.rss() / MIB, 1)
            out["peak_rss_mib"] = round(ctl.peak_rss() / MIB, 1)
        finally:
            stats, delete_s = await self.teardown(tracker, ctl)
        out["controller"] = stats
        out["namespace_delete_s"] = round(delete_s, 1)
        if profile:
            out["profile_file"] = str(ctl.profile_file)
        return out


def _stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, value in after.items():
        if key == "time":
            continue
        if isinstance(value, int | float):
            delta[key] = round(value - before.get(key, 0), 3)
        elif isinstance(value, dict):
            old = before.get(key) or {}
            delta[key] = {k: v - old.get(k, 0) for k, v in value.items() if v - old.get(k, 0)}
    return delta


def _process(pid: int | None) -> Any:
    import psutil

    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _cpu(proc: Any) -> float:
    if proc is None:
        return 0.0
    cpu = proc.cpu_times()
    return float(cpu.user + cpu.system)


def _cpu_at(ctl: Controller, t: float) -> float | None:
    """The controller's CPU seconds at driver time ``t`` (the first sample at or after it)."""
    for sample in ctl.samples:
        if sample.t >= t:
            return sample.cpu
    return ctl.samples[-1].cpu if ctl.samples else None


def _timeline(ctl: Controller, t0: float, points: int = 300) -> dict[str, list[float]]:
    samples = [s for s in ctl.samples if s.t >= t0 - 1]
    step = max(1, len(samples) // points)
    picked = samples[::step]
    return {
        "t_s": [round(s.t - t0, 2) for s in picked],
        "rss_mib": [round(s.rss / MIB, 1) for s in picked],
        "cpu_s": [round(s.cpu, 2) for s in picked],
    }
