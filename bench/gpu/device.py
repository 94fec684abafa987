"""Run a staged plan on the GPU machine: checkpoints, then each rendered vLLM container, measured.

  python3 .gpu/bench/gpu/device.py --plan .gpu/plan-7b.json --out "$OUT" --budget 560

Each ``serve`` step starts exactly the rendered command with the rendered environment and files (the
ConfigMap written to its mount path, the model cache at HF_HOME); the only differences are the ones each
case lists (added by ``cases``) plus the device's own environment underneath, recorded here. Between starts
the pod's /tmp (an emptyDir) is emptied, so every start is a new pod's; the model cache volume is kept.
Everything measured goes to ``OUT/results-NAME.json``, with the server logs in ``OUT/logs-NAME.tar.gz``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
# The staged copy is .gpu/bench/gpu/; in the repository this is bench/gpu/. Either way import it as bench.gpu.
sys.path.insert(0, str(HERE.parent.parent))

from bench.gpu import checkpoint, load, probes, vllm_log  # noqa: E402

BASE_URL = "http://127.0.0.1:8000"
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", flush=True)


def sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable: {exc}"


def gpu_memory_mib() -> tuple[int, int] | None:
    text = sh("nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits")
    try:
        used, total = (int(x) for x in text.splitlines()[0].split(","))
    except (ValueError, IndexError):
        return None
    return used, total


def facts(vllm_site: Path) -> dict[str, Any]:
    query = "name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,power.limit"
    smi = sh("nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader")
    versions = sh(
        sys.executable,
        "-c",
        "import torch, vllm, transformers; print('VERSIONS', vllm.__version__, torch.__version__, "
        "torch.version.cuda, transformers.__version__)",
    )
    # vLLM logs while importing; the answer is the line that starts with the marker.
    versions = next((x for x in versions.splitlines() if x.startswith("VERSIONS ")), "VERSIONS ?")[9:]
    return {
        "nvidia_smi": dict(zip(query.split(","), (x.strip() for x in smi.split(",")), strict=False)),
        "versions": dict(zip(("vllm", "torch", "cuda", "transformers"), versions.split(), strict=False)),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "vllm_site": str(vllm_site),
    }


def unpack(payload_dir: Path, target: Path) -> float:
    """Unpack the vLLM payload once per machine (a warm machine keeps it)."""
    started = time.monotonic()
    marker = target / ".unpacked"
    if marker.exists():
        return 0.0
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    zstd = shutil.which("zstd")
    env = dict(os.environ)
    if zstd is None:
        zstd = str(payload_dir / "bin" / "zstd")
        env["LD_LIBRARY_PATH"] = str(payload_dir / "bin")
    with subprocess.Popen(
        [zstd, "-d", "--long=27", "-c", str(payload_dir / "payload.tar.zst")], stdout=subprocess.PIPE, env=env
    ) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            tar.extractall(target, filter="fully_trusted")
    marker.touch()
    return round(time.monotonic() - started, 1)


class Server:
    """One vLLM container: the rendered command, its environment, its stamped log."""

    def __init__(self, case: dict[str, Any], label: str, env: dict[str, str], log_path: Path):
        self.case, self.label, self.log_path = case, label, log_path
        self.lines: list[vllm_log.Line] = []
        self.started = time.monotonic()
        self.log: TextIO = log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [*case["command"], *case["args"]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the engine core goes down with it
            cwd="/",
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            t = time.monotonic() - self.started
            text = raw.decode(errors="replace").rstrip("\n")
            self.lines.append((t, text))
            self.log.write(f"[{t:9.3f}] {text}\n")
        self.log.flush()

    def wait_healthy(self, limit_s: float) -> float | None:
        """Seconds from process start to the first /health 200; None if it died or ran out of time."""
        while time.monotonic() - self.started < limit_s:
            if probes.health(BASE_URL) == 200:
                return round(time.monotonic() - self.started, 2)
            if self.proc.poll() is not None:
                return None
            time.sleep(0.25)
        return None

    def stop(self) -> dict[str, Any]:
        exit_code = self.proc.poll()
        if exit_code is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                # vLLM drains for up to its shutdown timeout; nothing is in flight here, so do not wait long.
                self.proc.wait(timeout=8)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                with _suppress():
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        with _suppress():
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
        self.reader.join(timeout=10)
        self.log.close()
        # The next start profiles free memory: give the driver a moment to release this one's.
        used = None
        waited = time.monotonic()
        for _ in range(30):
            mem = gpu_memory_mib()
            used = mem[0] if mem else None
            if used is None or used < 2048:
                break
            time.sleep(0.5)
        return {
            "exited_before_stop": exit_code,
            "gpu_used_mib_after_stop": used,
            "release_wait_s": round(time.monotonic() - waited, 1),
        }


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def server_env(case: dict[str, Any], vllm_site: Path) -> dict[str, str]:
    """The device's environment (a pod: the image's), the rendered env on top, then the device additions."""
    env = dict(os.environ)
    for var in case["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
    env.update(case["device_env"])
    env["PYTHONPATH"] = str(vllm_site)
    return env


def write_config_files(case: dict[str, Any]) -> None:
    """The ConfigMap at its mount path, as the kubelet would project it (only these files)."""
    config_dir = Path(case["config_dir"])
    shutil.rmtree(config_dir, ignore_errors=True)
    config_dir.mkdir(parents=True)
    for name, text in case["files"].items():
        (config_dir / name).write_text(text, encoding="utf-8")


def empty_pod_tmp(pod_tmp: Path, keep: set[str]) -> list[str]:
    """A new pod's /tmp is an empty emptyDir: remove what earlier servers left (the device's own stays)."""
    removed = []
    for entry in pod_tmp.iterdir():
        if entry.name in keep:
            continue
        removed.append(entry.name)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with _suppress():
                entry.unlink()
    return removed


def run_serve(step: dict[str, Any], case: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    label = step["label"]
    result: dict[str, Any] = {"step": label, "case": case["name"], "kind": "serve"}
    removed = empty_pod_tmp(ctx["pod_tmp"], ctx["tmp_keep"])
    result["pod_tmp_removed"] = removed
    cache_root = next((v["value"] for v in case["env"] if v["name"] == "VLLM_CACHE_ROOT"), None)
    if step.get("clear_compile_cache") and cache_root:
        shutil.rmtree(cache_root, ignore_errors=True)
        result["compile_cache_cleared"] = cache_root
    write_config_files(case)
    Path(case["hf_home"]).mkdir(parents=True, exist_ok=True)
    env = server_env(case, ctx["vllm_site"])
    limit = min(step.get("health_limit_s", 420), ctx["left"]() - step.get("reserve_s", 20))
    result["health_limit_s"] = round(limit, 1)
    say(f"{label}: start {' '.join(case['command'] + case['args'])}")
    server = Server(case, label, env, ctx["logs"] / f"{label}.log")
    try:
        ready = server.wait_healthy(limit)
        result["health_200_after_s"] = ready
        mem = gpu_memory_mib()
        result["gpu_memory_mib"] = {"used": mem[0], "total": mem[1]} if mem else None
        result["startup"] = vllm_log.parse_startup(server.lines, ready).as_dict()
        say(f"{label}: /health 200 after {ready} s; {result['startup']['figures']}")
        if ready is None:
            result["log_tail"] = [text for _, text in server.lines[-40:]]
            return result
        if cache_root:
            result["compile_cache_bytes"] = _tree_bytes(Path(cache_root))
        result["probes"] = run_probes(step, case, ctx)
        result["load"] = []
        for level in step.get("load", []):
            if ctx["left"]() < level.get("needs_s", 30) + 30:
                result["load"].append({"concurrency": level["concurrency"], "skipped": "device time"})
                continue
            say(f"{label}: load c={level['concurrency']} n={level['requests']}")
            measured = asyncio.run(
                load.run_level(
                    BASE_URL,
                    case["served_model_name"],
                    level["concurrency"],
                    level["requests"],
                    step.get("input_tokens", 512),
                    step.get("output_tokens", 128),
                    case["shape"]["vocab_size"],
                    seed=1000 + level["concurrency"],
                )
            )
            say(f"{label}: {json.dumps(measured)}")
            result["load"].append(measured)
        result["health_at_end"] = probes.health(BASE_URL)
    except Exception:
        result["error"] = traceback.format_exc()[-2000:]
        say(f"{label}: ERROR {result['error']}")
    finally:
        result["stop"] = server.stop()
        result["log_errors"] = [text[:300] for _, text in server.lines if "Error" in text or "ERROR" in text][
            :20
        ]
    return result


def run_probes(step: dict[str, Any], case: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    model, out = case["served_model_name"], {}
    for probe in step.get("probes", []):
        try:
            if probe == "models":
                out[probe] = probes.models(BASE_URL)
            elif probe == "guide_chat":
                out[probe] = probes.guide_chat(BASE_URL, model)
            elif probe == "tool_call":
                out[probe] = probes.tool_call(BASE_URL, model)
            elif probe.startswith("long:"):
                tokens = int(probe.split(":", 1)[1])
                out[probe] = probes.long_prompt(BASE_URL, model, tokens, case["shape"]["vocab_size"])
            say(f"probe {probe}: {json.dumps(out.get(probe))[:400]}")
        except Exception as exc:
            out[probe] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            say(f"probe {probe}: {out[probe]}")
    return out


def run_checkpoint(step: dict[str, Any], case: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    snapshot = checkpoint.cache_snapshot_dir(Path(case["hf_home"]), case["model_id"])
    marker = snapshot / ".generated"
    if marker.exists():
        return {"step": step["label"], "kind": "checkpoint", "reused": str(snapshot)}
    tiny = checkpoint.load_tiny(Path(ctx["tiny_generator"]), Path(ctx["chat_template"]))
    written = checkpoint.generate(
        tiny, Path(case["hf_home"]), case["model_id"], case["shape"], case["checkpoint"]["layers"]
    )
    marker.touch()
    say(f"checkpoint {case['model_id']}: {written}")
    return {"step": step["label"], "kind": "checkpoint", **written}


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=560, help="seconds this command may run")
    ap.add_argument("--workdir", type=Path, default=Path("/opt/gpubench"))
    ap.add_argument("--vllm-site", type=Path, help="an installed vLLM instead of the payload (local tests)")
    ap.add_argument("--pod-tmp", type=Path, default=Path("/tmp"), help="the pod's /tmp (emptied per start)")
    ap.add_argument("--tiny-generator", type=Path, default=HERE / "tiny_telechat.py")
    ap.add_argument("--chat-template", type=Path, default=HERE / "telechat.jinja")
    args = ap.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    name = plan["name"]
    logs = args.workdir / f"logs-{name}"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)

    budget = float(args.budget)

    def left() -> float:
        return budget - (time.monotonic() - T0)

    results: dict[str, Any] = {"schema": "telechat-operator/gpu-bench/v1", "plan": name, "steps": []}
    out_file = args.out / f"results-{name}.json"

    def save() -> None:
        results["elapsed_s"] = round(time.monotonic() - T0, 1)
        out_file.write_text(json.dumps(results, indent=1))

    if args.vllm_site is None:
        vllm_site = args.workdir / "vllm-site"
        results["unpack_s"] = unpack(HERE.parent.parent, vllm_site)
        sys.path.insert(0, str(vllm_site))  # the openai client for the guide's call travels there
    else:
        vllm_site = args.vllm_site
    os.environ["PYTHONPATH"] = str(vllm_site)
    results["facts"] = facts(vllm_site) if args.vllm_site is None else {"local": True}
    say(f"facts: {results['facts']}")
    results["cases"] = plan["cases"]
    ctx = {
        "vllm_site": vllm_site,
        "logs": logs,
        "left": left,
        "pod_tmp": args.pod_tmp,
        "tmp_keep": {p.name for p in args.pod_tmp.iterdir()},
        "tiny_generator": args.tiny_generator,
        "chat_template": args.chat_template,
    }
    save()
    for step in plan["steps"]:
        case = plan["cases"][step["case"]]
        if left() < step.get("needs_s", 60):
            results["steps"].append({"step": step["label"], "skipped": f"{left():.0f} s left"})
            say(f"{step['label']}: skipped, {left():.0f} s left")
            continue
        runner = run_checkpoint if step["kind"] == "checkpoint" else run_serve
        try:
            results["steps"].append(runner(step, case, ctx))
        except Exception:
            results["steps"].append({"step": step["label"], "error": traceback.format_exc()[-2000:]})
            say(f"{step['label']}: ERROR {traceback.format_exc()[-800:]}")
        save()
    with tarfile.open(args.out / f"logs-{name}.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname=f"logs-{name}")
    save()
    say(f"done: {out_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
