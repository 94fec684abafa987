"""Run the operator's own CLI (``telechat-operator run ...``) with light instrumentation for the benchmark.

    python -m bench.opproc --stats FILE [--profile FILE.prof] -- run --standalone --resync 30

Counts reconciles and what each did (wrapping ``DeploymentReconciler.reconcile``) and the requests the process
sent (wrapping ``Kube.request`` and kopf's ``api.request``), and writes them to FILE as JSON once a
second, on SIGUSR1 (the driver asks before it reads) and at exit. TELECHAT_BENCH_EXPERIMENTS names
proposed fixes to patch in first (bench.experiments).
Nothing else changes: the operator runs exactly as ``telechat-operator run`` does. With ``--profile`` the
whole process runs under cProfile and the stats are dumped at exit (that run is not timed).
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kopf._cogs.clients import api as kopf_api

from telechat_operator import cli, kube
from telechat_operator.controller.status import Outcome
from telechat_operator.deployment.reconciler import DeploymentReconciler

from . import experiments
from .kubeapi import classify
from .traffic import key_name

STATS: dict[str, Any] = {
    "reconciles": 0,
    "reconcile_seconds": 0.0,
    "applied": 0,
    "status_written": 0,
    "noop_reconciles": 0,
    # Requests the process sent, by the labels the API server's metric uses: its own client, and kopf's.
    "requests": Counter(),
    "kopf_requests": Counter(),
}
_lock = threading.Lock()
_dump_lock = threading.RLock()


def _install() -> None:
    original_reconcile = DeploymentReconciler.reconcile
    original_request = kube.Kube.request

    async def reconcile(self: DeploymentReconciler, ns: str, name: str) -> Outcome:
        start = time.perf_counter()
        outcome = await original_reconcile(self, ns, name)
        with _lock:
            STATS["reconciles"] += 1
            STATS["reconcile_seconds"] += time.perf_counter() - start
            STATS["applied"] += outcome.applied
            STATS["status_written"] += int(outcome.status_written)
            if not outcome.applied and not outcome.status_written and not outcome.deleted:
                STATS["noop_reconciles"] += 1
        return outcome

    async def request(self: kube.Kube, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        query = dict(kwargs.get("query") or [])
        label = key_name(classify(method, path, query, kwargs.get("content_type", "application/json")))
        with _lock:
            STATS["requests"][label] += 1
        return await original_request(self, method, path, **kwargs)

    original_kopf_request = kopf_api.request

    async def kopf_request(method: str, url: str, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        headers = kwargs.get("headers") or {}
        content_type = headers.get("Content-Type", "application/json")
        label = key_name(classify(method.upper(), parts.path, dict(parse_qsl(parts.query)), content_type))
        with _lock:
            STATS["kopf_requests"][label] += 1
        return await original_kopf_request(method, url, **kwargs)

    DeploymentReconciler.reconcile = reconcile  # type: ignore[method-assign]
    kube.Kube.request = request  # type: ignore[method-assign]
    kopf_api.request = kopf_request


def _dump(path: Path) -> None:
    # One writer at a time (the timer thread, SIGUSR1, exit): they share the temporary file.
    with _dump_lock:
        _dump_locked(path)


def _dump_locked(path: Path) -> None:
    with _lock:
        data = dict(
            STATS,
            requests=dict(STATS["requests"]),
            kopf_requests=dict(STATS["kopf_requests"]),
            time=time.time(),
        )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args()
    argv = [a for a in opts.args if a != "--"]
    STATS["experiments"] = experiments.apply(os.environ.get("TELECHAT_BENCH_EXPERIMENTS", "").split(","))
    _install()

    def loop() -> None:
        while True:
            _dump(opts.stats)
            time.sleep(1.0)

    threading.Thread(target=loop, daemon=True).start()
    atexit.register(_dump, opts.stats)
    profiler: cProfile.Profile | None = None
    if opts.profile is not None:
        profiler = cProfile.Profile()

        def save() -> None:
            assert profiler is not None
            profiler.disable()
            profiler.dump_stats(str(opts.profile))

        atexit.register(save)
        profiler.enable()
    # kopf turns SIGTERM into a graceful stop; SIGINT likewise. Nothing else to set up.
    signal.signal(signal.SIGUSR1, lambda *_: _dump(opts.stats))
    raise SystemExit(cli.main(argv))


if __name__ == "__main__":
    main()
