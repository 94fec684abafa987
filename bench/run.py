"""Run the benchmarks: ``python -m bench.run`` (full, what ``make bench`` runs) or ``--quick``.

Starts a local control plane of its own (hack/cluster.sh with TELECHAT_CLUSTER_DIR, default
/tmp/telechat-bench-cluster), adds fake GPU nodes, runs every scenario with the floor and with the operator,
writes bench/results/<name>.json and <name>.png, updates the table in docs/benchmarks.md (full runs), and
stops the control plane again (unless --keep-cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from . import experiments, report
from .cluster import DEFAULT_DIR, ROOT, BenchCluster, add_gpu_nodes, delete_leftovers, nodes_ready
from .kubeapi import Api
from .procs import workdir
from .scenarios import MODES, Harness, Settings

log = logging.getLogger("bench")
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def _settings(opts: argparse.Namespace) -> Settings:
    if opts.quick:
        defaults: dict[str, Any] = {"trials": 10, "sizes": [40], "resync": 5.0, "idle_window": 11.0}
    else:
        defaults = {"trials": 120, "sizes": [100, 500, 1000], "resync": 30.0, "idle_window": 65.0}
    sizes = [int(x) for x in opts.sizes.split(",")] if opts.sizes else defaults["sizes"]
    return Settings(
        trials=opts.trials or defaults["trials"],
        bursts=sizes,
        spec_change_size=min(sizes),
        idle_size=max(sizes),
        resync=opts.resync or defaults["resync"],
        idle_window=opts.idle_window or defaults["idle_window"],
        settle=2.0 if opts.quick else 5.0,
        quiet_for=2.0 if opts.quick else 3.0,
        create_concurrency=16,
        workdir=workdir(),
        profile=None if opts.profile == "none" else opts.profile,
    )


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        rev = ""
    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git": rev,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def _save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


async def _run(opts: argparse.Namespace, settings: Settings, out: Path) -> dict[str, Any]:
    cluster = BenchCluster(Path(opts.cluster_dir))
    log.info("control plane in %s", cluster.dir)
    cluster.up()
    cluster.install_crds()
    api = await Api.connect(str(cluster.kubeconfig), "telechat-bench-driver")
    results: dict[str, Any] = {
        "name": out.stem,
        "quick": opts.quick,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": {
            "trials": settings.trials,
            "bursts": settings.bursts,
            "spec_change_size": settings.spec_change_size,
            "idle_size": settings.idle_size,
            "resync_seconds": settings.resync,
            "idle_window_s": settings.idle_window,
            "settle_s": settings.settle,
            "create_concurrency": settings.create_concurrency,
        },
        "latency": {},
        "bursts": [],
    }
    try:
        left = await delete_leftovers(api)
        if left:
            log.info("deleted namespaces an earlier run left: %s", ", ".join(left))
        version = await api.request("GET", "/version")
        results["machine"]["kubernetes"] = (version or {}).get("gitVersion")
        # Each latency trial keeps its pod (1 GPU) until the end of its run: enough 8-GPU nodes for all.
        nodes = await add_gpu_nodes(api, math.ceil((settings.trials + 4) / 8))
        await nodes_ready(api, nodes)
        h = Harness(api, cluster, settings)
        started = time.perf_counter()
        if "latency" in opts.only:
            for mode in MODES:
                log.info("latency: %s, %d trials", mode, settings.trials)
                results["latency"][mode] = await h.latency(mode)
                _log_latency(results["latency"][mode])
                _save(results, out)
        if "burst" in opts.only:
            for size in settings.bursts:
                for mode in MODES:
                    log.info("burst: %s, %d resources", mode, size)
                    result = await h.burst(mode, size)
                    results["bursts"].append(result)
                    _log_burst(result)
                    _save(results, out)
        if opts.experiment:
            size = max(settings.bursts)
            fixes = tuple(x for x in opts.experiment.split(",") if x)
            log.info("experiment: operator with %s, %d resources", ", ".join(fixes), size)
            result = await h.burst("operator", size, experiments=fixes)
            results["experiment"] = result
            _log_burst(result)
            _save(results, out)
        if settings.profile and "profile" in opts.only:
            size = max(settings.bursts)
            log.info("profile: operator, %d resources, %s (untimed)", size, settings.profile)
            result = await h.burst("operator", size, profile=settings.profile)
            results["profile"] = report.summarize_profile(
                result, settings.profile, RESULTS / f"{out.stem}-profile.txt"
            )
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        _save(results, out)
    finally:
        await api.close()
        if not opts.keep_cluster:
            cluster.down()
    return results


def _log_latency(r: dict[str, Any]) -> None:
    for key in ("apply_to_children", "pod_ready_to_ready"):
        s = r["summary"].get(key, {})
        log.info("  %-9s %-20s p50 %6s ms  p95 %6s ms  p99 %6s ms", r["mode"], key,
                 s.get("p50_ms"), s.get("p95_ms"), s.get("p99_ms"))  # fmt: skip


def _log_burst(r: dict[str, Any]) -> None:
    log.info(
        "  %-9s n=%-5d converged %.1f s (children %.1f s), peak RSS %.0f MiB, CPU %.1f s, "
        "writes/resource %.2f",
        r["mode"], r["size"], r["converged_s"], r["all_children_s"], r["peak_rss_mib"],
        r["cpu_s_window"], r["traffic_create"]["writes_per_resource"],
    )  # fmt: skip
    if "traffic_spec_change" in r:
        log.info(
            "  %-9s spec change: writes/resource %.2f",
            r["mode"],
            r["traffic_spec_change"]["writes_per_resource"],
        )
    if "traffic_idle" in r:
        t = r["traffic_idle"]
        log.info(
            "  %-9s idle %.0f s: writes %d, reads %d, reconciles %s",
            r["mode"], t["window_s"], t["writes"], t["reads"], t["client_side"].get("reconciles"),
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 trials, one burst of 40: about two minutes")
    parser.add_argument("--trials", type=int, default=None, help="latency trials per controller")
    parser.add_argument("--sizes", default=None, help="burst sizes, comma-separated (e.g. 100,500,1000)")
    parser.add_argument("--resync", type=float, default=None, help="operator --resync seconds")
    parser.add_argument("--idle-window", type=float, default=None, help="seconds of the idle measurement")
    parser.add_argument(
        "--only", default="latency,burst,profile", help="what to run (default: latency,burst,profile)"
    )
    parser.add_argument(
        "--profile",
        choices=["none", "cprofile", "py-spy"],
        default=None,
        help="also run the largest burst once more with the operator under a profiler (untimed); "
        "default: py-spy when installed, else cProfile, for full runs; none for --quick",
    )
    parser.add_argument(
        "--experiment",
        default=None,
        help="also run the largest burst with the operator patched with these proposed fixes "
        f"(bench/experiments.py; default for full runs: {','.join(experiments.ALL)}; 'none' to skip)",
    )
    parser.add_argument("--name", default=None, help="results file stem (default: results, or quick)")
    parser.add_argument("--cluster-dir", default=str(DEFAULT_DIR))
    parser.add_argument("--keep-cluster", action="store_true", help="leave the control plane running")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: redo the plot, the table (and docs/benchmarks.md) from the results JSON",
    )
    opts = parser.parse_args(argv)
    if opts.experiment is None and not opts.quick:
        opts.experiment = ",".join(experiments.ALL)
    if opts.experiment == "none":
        opts.experiment = None
    if opts.profile is None:
        opts.profile = "none" if opts.quick else ("py-spy" if report.have_py_spy() else "cprofile")
    # A plain `kill` stops the run like Ctrl-C does: controllers stopped, namespaces and cluster cleaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    settings = _settings(opts)
    out = RESULTS / f"{opts.name or ('quick' if opts.quick else 'results')}.json"
    # --report-only: nothing measured, the plot, table and docs are made again from the results file.
    results = json.loads(out.read_text()) if opts.report_only else asyncio.run(_run(opts, settings, out))
    png = out.with_suffix(".png")
    report.plot(results, png)
    table = report.table(results)
    print(table)
    if not opts.quick and not opts.no_docs:
        report.update_doc(DOC, table, results, png)
        log.info("updated %s", DOC.relative_to(ROOT))
    log.info("wrote %s and %s", out.relative_to(ROOT), png.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
