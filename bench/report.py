"""Results into a Markdown table (docs/benchmarks.md), a PNG, and a profile summary."""

from __future__ import annotations

import collections
import io
import pstats
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB_PER_MIB = 1.048576
IDLE_LEAF = re.compile(
    r"^_worker \(concurrent/futures/thread\.py:8\d\)"
    r"|\.select \(selectors\.py"
    r"|^(Condition\.)?wait \(threading\.py"
)
BREAKDOWN = (
    ("kopf: processing watch events (process_resource_event)", "process_resource_event ("),
    ("kopf: running sync handlers in threads (run_in_executor)", "run_in_executor ("),
    ("index handlers: snapshot() deep copies", "snapshot (telechat_operator"),
    ("JSON decoding (watch streams, responses)", "JSONDecoder.raw_decode ("),
    ("reconcile, all of it (DeploymentReconciler.reconcile)", "DeploymentReconciler.reconcile ("),
    ("reconcile: ObservedState.children", "ObservedState.children ("),
    ("reconcile: check (parse + validate)", "check (telechat_operator"),
    ("reconcile: render_deployment_set", "render_deployment_set ("),
    ("reconcile: plan", "plan (telechat_operator"),
    ("reconcile: API requests (Kube.request)", "Kube.request ("),
    ("reconcile: status (StatusWriter.write)", "StatusWriter.write ("),
    ("aiohttp: reading ~/.netrc per request (trust_env)", "netrc_from_env ("),
    ("logging (StreamHandler.emit)", "StreamHandler.emit ("),
)
START, END = "<!-- bench:table:start -->", "<!-- bench:table:end -->"


def have_py_spy() -> bool:
    return bool(shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy").exists())


def _bursts(results: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(b["size"], b["mode"]): b for b in results.get("bursts", [])}


def _pcts(summary: dict[str, Any]) -> str:
    if not summary:
        return "-"
    return f"{summary['p50_ms']:.0f} / {summary['p95_ms']:.0f} / {summary['p99_ms']:.0f}"


def _ratio(op: float | None, floor: float | None) -> str:
    if op is None or floor is None or floor == 0:
        return "-"
    return f"{op / floor:.2f}x"


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _wr(traffic: dict[str, Any]) -> str:
    w, r = traffic.get("writes_per_resource"), traffic.get("reads_per_resource")
    return f"{_num(w, '{:.2f}')} ({_num(r, '{:.2f}')})"


def _sent(traffic: dict[str, Any]) -> str:
    """Requests (not watches) the controller process counted itself sending in the window."""
    side = traffic.get("client_side") or {}
    if not side:
        return "-"
    if "writes" in side and "requests" not in side:  # the floor counts its client's calls
        return str(int(side.get("writes", 0) + side.get("reads", 0)))
    total = 0
    for key in ("requests", "kopf_requests"):
        total += sum(v for k, v in (side.get(key) or {}).items() if not k.startswith("WATCH"))
    return str(total)


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []
    lat = results.get("latency", {})
    fl, op = lat.get("floor", {}).get("summary", {}), lat.get("operator", {}).get("summary", {})
    if fl or op:
        f50 = fl.get("apply_to_children", {}).get("p50_ms")
        o50 = op.get("apply_to_children", {}).get("p50_ms")
        ok = None if f50 is None or o50 is None else (o50 <= 1.5 * f50 and o50 < 100)
        n = lat.get("operator", {}).get("trials", 0)
        rows.append(
            (
                f"apply → all children exist, p50 / p95 / p99 ms ({n} trials)",
                _pcts(fl.get("apply_to_children", {})),
                _pcts(op.get("apply_to_children", {})),
                _ratio(o50, f50),
                "p50 ≤ 1.5x floor and < 100 ms",
                _yes(ok),
            )
        )
        for key, label in (
            ("apply_to_status", "apply → first status written"),
            ("pod_ready_to_ready", "pod Ready → resource Ready"),
            ("deployment_ready_to_ready", "Deployment ready → resource Ready"),
            ("apply_to_ready", "apply → resource Ready (end to end)"),
        ):
            f, o = fl.get(key, {}), op.get(key, {})
            rows.append(
                (
                    f"{label}, p50 / p95 / p99 ms",
                    _pcts(f),
                    _pcts(o),
                    _ratio(o.get("p50_ms"), f.get("p50_ms")),
                    "",
                    "",
                )
            )
    bursts = _bursts(results)
    sizes = sorted({size for size, _ in bursts})
    for size in sizes:
        f, o = bursts.get((size, "floor"), {}), bursts.get((size, "operator"), {})
        big = size >= 1000
        conv_ok = (o["converged_s"] < 60) if big and o else None
        rows.append(
            (
                f"{size} created at once: all children + Ready status, s",
                _num(f.get("converged_s")),
                _num(o.get("converged_s")),
                _ratio(o.get("converged_s"), f.get("converged_s")),
                "< 60 s at 1000" if big else "",
                _yes(conv_ok),
            )
        )
        rows.append(
            (
                f"{size}: all children exist / all first statuses written, s",
                f"{_num(f.get('all_children_s'))} / {_num(f.get('all_status_s'))}",
                f"{_num(o.get('all_children_s'))} / {_num(o.get('all_status_s'))}",
                _ratio(o.get("all_children_s"), f.get("all_children_s")),
                "",
                "",
            )
        )
        peak_f = f.get("peak_rss_mib") and f["peak_rss_mib"] * MB_PER_MIB
        peak_o = o.get("peak_rss_mib") and o["peak_rss_mib"] * MB_PER_MIB
        rows.append(
            (
                f"{size}: peak RSS of the controller process, MB",
                _num(peak_f, "{:.0f}"),
                _num(peak_o, "{:.0f}"),
                _ratio(peak_o, peak_f),
                "< 200 MB at 1000" if big else "",
                _yes(peak_o < 200 if big and peak_o else None),
            )
        )
        rows.append(
            (
                f"{size}: CPU seconds of the controller, create → converged",
                _num(f.get("cpu_s_to_converge"), "{:.2f}"),
                _num(o.get("cpu_s_to_converge"), "{:.2f}"),
                _ratio(o.get("cpu_s_to_converge"), f.get("cpu_s_to_converge")),
                "",
                "",
            )
        )
        fw = f.get("traffic_create", {}).get("writes_per_resource")
        ow = o.get("traffic_create", {}).get("writes_per_resource")
        fr = f.get("traffic_create", {}).get("reads_per_resource")
        orr = o.get("traffic_create", {}).get("reads_per_resource")
        rows.append(
            (
                f"{size}: API writes (reads) per created resource",
                f"{_num(fw, '{:.2f}')} ({_num(fr, '{:.2f}')})",
                f"{_num(ow, '{:.2f}')} ({_num(orr, '{:.2f}')})",
                _ratio(ow, fw),
                "≤ 5 writes",
                _yes(ow <= 5 if ow is not None else None),
            )
        )
        if "traffic_spec_change" in o or "traffic_spec_change" in f:
            fs, os_ = f.get("traffic_spec_change", {}), o.get("traffic_spec_change", {})
            rows.append(
                (
                    f"{size}: API writes (reads) per spec change",
                    _wr(fs),
                    _wr(os_),
                    _ratio(os_.get("writes_per_resource"), fs.get("writes_per_resource")),
                    "",
                    "",
                )
            )
        if "traffic_idle" in o or "traffic_idle" in f:
            fi, oi = f.get("traffic_idle", {}), o.get("traffic_idle", {})
            recon = oi.get("client_side", {}).get("reconciles")
            rows.append(
                (
                    f"{size}: idle, {oi.get('window_s', 0):.0f} s with resync every "
                    f"{results['settings']['resync_seconds']:g} s ({recon} reconciles): writes (reads) "
                    "counted by the API server; requests the process itself sent",
                    f"{fi.get('writes', '-')} ({fi.get('reads', '-')}); sent {_sent(fi)}",
                    f"{oi.get('writes', '-')} ({oi.get('reads', '-')}); sent {_sent(oi)}",
                    "",
                    "0 writes",
                    _yes(oi.get("writes") == 0 if oi else None),
                )
            )
            rows.append(
                (
                    f"{size}: idle, CPU seconds of the controller in that window",
                    _num(f.get("idle_cpu_s"), "{:.2f}"),
                    _num(o.get("idle_cpu_s"), "{:.2f}"),
                    "",
                    "",
                    "",
                )
            )
    exp = results.get("experiment")
    if exp:
        size = exp["size"]
        f, o = bursts.get((size, "floor"), {}), bursts.get((size, "operator"), {})
        fixes = ", ".join(f"`{x}`" for x in exp.get("experiments", []))
        for key, label, fmt in (
            ("converged_s", "all children + Ready status, s", "{:.1f}"),
            ("all_children_s", "all children exist, s", "{:.1f}"),
            ("cpu_s_to_converge", "CPU seconds, create → converged", "{:.2f}"),
            ("peak_rss_mib", "peak RSS, MiB", "{:.0f}"),
        ):
            rows.append(
                (
                    f"{size}, operator **with proposed fixes**¹: {label} (without: {_num(o.get(key), fmt)})",
                    _num(f.get(key), fmt),
                    _num(exp.get(key), fmt),
                    _ratio(exp.get(key), f.get(key)),
                    "",
                    "",
                )
            )
    lines = [
        "| Measure | Floor | Operator | Operator / floor | Target | Met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    m = results.get("machine", {})
    lines.append("")
    if exp:
        lines.append(
            f"¹ Patched into the benchmark's operator process only (bench/experiments.py): {fixes}. "
            "See the proposals below."
        )
        lines.append("")
    lines.append(
        f"Run `{results.get('name')}` of {results.get('started')} on {m.get('cpus')} CPUs "
        f"({m.get('cpu_model')}), {m.get('memory_gib')} GiB, Kubernetes {m.get('kubernetes')}, "
        f"Python {m.get('python')}, commit {m.get('git')}; load average at start "
        f"{m.get('load_average_start')}, at end {m.get('load_average_end')}."
    )
    return "\n".join(lines)


def traffic_table(results: dict[str, Any]) -> str:
    """Requests per resource split by verb and resource, as the API server counted them."""
    bursts = _bursts(results)
    columns: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for size in sorted({s for s, _ in bursts}):
        for key, label in (
            ("traffic_create", "create"),
            ("traffic_spec_change", "spec change"),
            ("traffic_idle", "idle resync"),
        ):
            f = bursts.get((size, "floor"), {}).get(key)
            o = bursts.get((size, "operator"), {}).get(key)
            if f or o:
                columns.append((f"{label} (n={size})", f or {}, o or {}))
    if not columns:
        return ""
    keys = sorted(
        {k for _, f, o in columns for t in (f, o) for k in t.get("by_request_per_resource", {})},
        key=lambda k: (k.split(" ")[0] not in ("GET", "LIST"), k),
    )
    head = "| Request | " + " | ".join(f"{label}: floor / operator" for label, _, _ in columns) + " |"
    lines = [head, "| --- |" + " ---: |" * len(columns)]
    for k in keys:
        cells = []
        for _, f, o in columns:
            fv = f.get("by_request_per_resource", {}).get(k, 0)
            ov = o.get("by_request_per_resource", {}).get(k, 0)
            cells.append(f"{fv:.2f} / {ov:.2f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    totals = []
    for _, f, o in columns:
        totals.append(f"{f.get('writes_per_resource', 0):.2f} / {o.get('writes_per_resource', 0):.2f}")
    lines.append("| **writes, total** | " + " | ".join(totals) + " |")
    reads = []
    for _, f, o in columns:
        reads.append(f"{f.get('reads_per_resource', 0):.2f} / {o.get('reads_per_resource', 0):.2f}")
    lines.append("| **reads (GET, LIST), total** | " + " | ".join(reads) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:  # noqa: C901  (one figure, panel after panel)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colors = {"floor": "#4c72b0", "operator": "#dd8452"}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    lat = results.get("latency", {})
    for ax, key, title in (
        (axes[0][0], "apply_to_children", "apply → all children exist"),
        (axes[0][1], "pod_ready_to_ready", "pod Ready → resource Ready"),
    ):
        for mode in ("floor", "operator"):
            raw = sorted(lat.get(mode, {}).get("raw_ms", {}).get(key, []))
            if raw:
                ys = [0.0] + [(i + 1) / len(raw) for i in range(len(raw))]
                raw = [raw[0], *raw]
                p50 = lat[mode]["summary"][key]["p50_ms"]
                ax.step(raw, ys, where="post", color=colors[mode], label=f"{mode} (p50 {p50:.0f} ms)")
        if key == "apply_to_children":
            ax.axvline(100, color="grey", ls=":", lw=1, label="100 ms target")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("ms (log)")
        ax.set_ylabel("fraction of trials")
        ax.set_title(f"Latency: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    bursts = _bursts(results)
    sizes = sorted({s for s, _ in bursts})

    def series(mode: str, fn: Any) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for s in sizes:
            b = bursts.get((s, mode))
            if b is not None and fn(b) is not None:
                xs.append(s)
                ys.append(fn(b))
        return xs, ys

    panels: tuple[tuple[Any, str, Callable[[dict[str, Any]], float | None], int | None, str], ...] = (
        (axes[0][2], "Burst: time to converge (s)", lambda b: b["converged_s"], 60, "60 s target"),
        (axes[1][0], "Burst: peak RSS (MB)", lambda b: b["peak_rss_mib"] * MB_PER_MIB, 200, "200 MB target"),
        (
            axes[1][1],
            "Burst: controller CPU seconds to converge",
            lambda b: b.get("cpu_s_to_converge"),
            None,
            "",
        ),
    )
    for ax, title, fn, target, tlabel in panels:
        for mode in ("floor", "operator"):
            xs, ys = series(mode, fn)
            ax.plot(xs, ys, marker="o", color=colors[mode], label=mode)
        exp = results.get("experiment")
        if exp and fn(exp) is not None:
            ax.plot([exp["size"]], [fn(exp)], marker="*", ms=12, ls="", color="#55a868",
                    label="operator + proposed fixes")  # fmt: skip
        if target:
            ax.axhline(target, color="grey", ls=":", lw=1, label=tlabel)
        ax.set_xlabel("resources created at once")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    ax = axes[1][2]
    groups: list[tuple[str, dict[str, float]]] = []

    def writes(size: int, key: str) -> dict[str, float]:
        found = {m: bursts.get((size, m), {}).get(key) for m in ("floor", "operator")}
        return {m: t["writes_per_resource"] for m, t in found.items() if t}

    for s in sizes:
        groups.append((f"create\n(n={s})", writes(s, "traffic_create")))
    for s in sizes:
        for key, label in (("traffic_spec_change", "spec change"), ("traffic_idle", "idle resync")):
            if writes(s, key):
                groups.append((f"{label}\n(n={s})", writes(s, key)))
    width = 0.38
    for i, mode in enumerate(("floor", "operator")):
        bar_xs = [g + (i - 0.5) * width for g in range(len(groups))]
        bar_ys = [vals.get(mode, 0.0) for _, vals in groups]
        bars = ax.bar(bar_xs, bar_ys, width, color=colors[mode], label=mode)
        for bar, y in zip(bars, bar_ys, strict=True):
            ax.annotate(
                f"{y:.2f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=7
            )
    ax.axhline(5, color="grey", ls=":", lw=1, label="5 writes target (create)")
    ax.set_ylim(0, max([5.0] + [v for _, vals in groups for v in vals.values()]) * 1.3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g for g, _ in groups], fontsize=8)
    ax.set_title("API writes per resource")
    ax.legend(fontsize=8, ncols=3, loc="upper center")
    ax.grid(alpha=0.3, axis="y")

    m = results.get("machine", {})
    fig.suptitle(
        f"telechat-operator vs. floor — {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB, "
        f"Kubernetes {m.get('kubernetes')}, run {results.get('started')}"
        + (" (quick)" if results.get("quick") else "")
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_doc(doc: Path, table_md: str, results: dict[str, Any], png: Path) -> None:
    split = traffic_table(results)
    block = (
        f"{START}\n{table_md}\n\nAPI requests per resource by verb and resource (server-side counts, "
        f"attributed as described under Method):\n\n{split}\n\n"
        f"![benchmark plot](../bench/results/{png.name})\n{END}"
    )
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Results\n\n" + block + "\n"
    doc.write_text(text)


# --- profiles ------------------------------------------------------------------------------------------
def summarize_profile(result: dict[str, Any], kind: str, out: Path, top: int = 25) -> dict[str, Any]:
    """Write a readable top list of the profile next to the results and return its head."""
    src = Path(result.get("profile_file", ""))
    summary: dict[str, Any] = {
        "kind": kind,
        "size": result.get("size"),
        "converged_s_under_profiler": result.get("converged_s"),
        "cpu_s_window": result.get("cpu_s_window"),
        "text": str(out.name),
    }
    if not src.exists():
        summary["error"] = f"no profile written ({src})"
        return summary
    if kind == "cprofile":
        buf = io.StringIO()
        stats = pstats.Stats(str(src), stream=buf)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        out.write_text(buf.getvalue())
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append({"function": f"{func} ({file}:{line})", "calls": nc, "self_s": round(tt, 3),
                         "total_s": round(ct, 3)})  # fmt: skip
        rows.sort(key=lambda r: -r["self_s"])
        summary["top_self"] = rows[:top]
        return summary
    # py-spy --format raw: "frame;frame;...;leaf count" per line, frames "func (file:line)". py-spy's idle
    # detection does not work on every kernel, so threads blocked in a queue or in epoll are dropped here,
    # and so is the benchmark's own counter thread: what remains is the operator's CPU.
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = dropped = 0
    for line in src.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        if IDLE_LEAF.search(stack.rsplit(";", 1)[-1]) or "loop (bench/opproc.py" in stack:
            dropped += count
            continue
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        self_count[frames[-1]] += count
        for f in set(frames):
            incl_count[f] += count
    total = max(total, 1)
    lines = [f"py-spy samples: {total} active ({dropped} idle or the benchmark's own, dropped)", ""]
    lines.append("self (leaf) %:")
    lines += [f"{100 * v / total:6.2f}  {k}" for k, v in self_count.most_common(top)]
    lines += ["", "where the time goes (inclusive %, overlapping):"]
    breakdown = {}
    for label, pattern in BREAKDOWN:
        pct = max((100 * v / total for k, v in incl_count.items() if pattern in k), default=0.0)
        breakdown[label] = round(pct, 2)
        lines.append(f"{pct:6.2f}  {label}")
    summary["breakdown"] = breakdown
    lines += ["", "inclusive %:"]
    lines += [f"{100 * v / total:6.2f}  {k}" for k, v in incl_count.most_common(top * 2)]
    out.write_text("\n".join(lines) + "\n")
    summary["samples"] = total
    summary["dropped_idle_samples"] = dropped
    summary["top_self"] = [
        {"function": k, "pct": round(100 * v / total, 2)} for k, v in self_count.most_common(top)
    ]
    summary["top_inclusive"] = [
        {"function": k, "pct": round(100 * v / total, 2)} for k, v in incl_count.most_common(top * 2)
    ]
    return summary
