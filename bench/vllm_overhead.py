"""Operator overhead to a healthy vLLM: apply -> Ready through the operator vs. vLLM started directly.

Both paths run the same command with the same config files and environment (the one the local kubelet ran
for the operator's pod), on the same tiny TeleChat2 checkpoint and vLLM CPU environment, alternating the
order trial by trial. Through the operator the clock runs from `kubectl apply` to the resource's Ready
condition (scheduling, rendering, the pod's probes, status); directly, from process start to /health 200.

    .venv/bin/python -m bench.vllm_overhead --trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hack"))

from tests.e2e.conftest import model_volume  # noqa: E402
from tests.helpers import Cluster, wait_for  # noqa: E402
from tests.integration.tcd import apply, condition, get  # noqa: E402
from tests.operator_process import start_operator, stop_operator  # noqa: E402

from local_node import CPU_IMAGE_ENV, LocalNode, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def cluster_handle(cluster_dir: Path) -> Cluster:
    subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), "up"],
        check=True,
        env={**os.environ, "TELECHAT_CLUSTER_DIR": str(cluster_dir)},
    )
    env = dict(os.environ)
    env["KUBECONFIG"] = str(cluster_dir / "kubeconfig")
    env["PATH"] = f"{ROOT / '.tools' / 'bin'}:{env.get('PATH', '')}"
    return Cluster(dir=cluster_dir, kubeconfig=cluster_dir / "kubeconfig", started_here=True, env=env)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as rsp:
            return bool(rsp.status == 200)
    except OSError:
        return False


def through_operator(
    cluster: Cluster,
    kubelet: LocalNode,
    ns: str,
    name: str,
    spec: dict[str, Any],
    phases: list[dict[str, float]],
) -> tuple[float, Any]:
    start = time.monotonic()
    apply(cluster, ns, name, spec)
    wait_for(
        lambda: condition(get(cluster, ns, "tcd", name), "Ready").get("status") == "True",
        timeout=600,
        interval=0.2,
        message=f"{name} Ready",
    )
    done = time.monotonic()
    run = kubelet.run_for(ns, name)
    assert run is not None and run.started_at is not None and run.ready_at is not None
    # Where the time goes: apply -> process started (API, scheduler, kubelet), process -> probe passed
    # (vLLM itself), probe passed -> resource Ready (pod status, Deployment controller, operator).
    phases.append(
        {
            "apply_to_process_start_s": run.started_at - start,
            "process_start_to_probe_ready_s": run.ready_at - run.started_at,
            "probe_ready_to_resource_ready_s": done - run.ready_at,
        }
    )
    return done - start, run


def directly(command: list[str], env: dict[str, str], workdir: Path) -> float:
    port = free_port()
    cmd = [*command[:-4], "--host", "127.0.0.1", "--port", str(port)]
    # A fresh HOME, as a new pod has (its /tmp is an emptyDir): no caches left by an earlier run.
    env = {**env, "HOME": tempfile.mkdtemp(prefix="home-", dir=workdir)}
    start = time.monotonic()
    with (workdir / "direct.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    try:
        wait_for(
            lambda: healthy(port) or proc.poll() is not None,
            timeout=600,
            interval=0.2,
            message="direct /health",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"direct vLLM exited {proc.returncode}; see {workdir / 'direct.log'}")
        return time.monotonic() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    vllm_py = subprocess.run(
        ["bash", str(ROOT / "hack" / "vllm-env.sh")], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    work = Path(tempfile.mkdtemp(prefix="telechat-overhead-"))
    subprocess.run(
        [vllm_py, str(ROOT / "tests/e2e/tiny_telechat.py"), str(work / "models" / "telechat2")],
        check=True,
        capture_output=True,
    )
    cluster = cluster_handle(ROOT / ".cluster-overhead")
    op = start_operator(cluster, name="operator-overhead")
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    kubelet = LocalNode(api, "overhead-node", vllm_py, work / "kubelet", image_env=CPU_IMAGE_ENV, gpus=1)
    kubelet.register()
    ns = f"t-overhead-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns, check=True)
    model_volume(cluster, ns, work / "models")
    spec = {
        "model": {
            "name": "Tele-AI/TeleChat2-7B",
            "servedModelName": "tiny",
            "pvc": {"claimName": "tiny-model", "path": "telechat2"},
        },
        "engine": {"dtype": "bfloat16", "extraArgs": ["--enforce-eager"]},
        "sampling": {"temperature": 0.0, "repetitionPenalty": 1.05, "maxTokens": 512},
        "scheduling": {"nodeSelector": {"kubernetes.io/hostname": "overhead-node"}},
    }
    via_operator: list[float] = []
    direct: list[float] = []
    last_command: list[str] = []
    last_env: dict[str, str] = {}
    phases: list[dict[str, float]] = []
    try:
        for trial in range(args.trials):
            name = f"tiny-{trial}"
            # Alternate which path runs first (page cache, CPU temperature); the first trial needs the
            # operator's run to learn the exact command.
            first_direct = trial % 2 == 1
            if first_direct:
                direct.append(directly(last_command, last_env, work))
            elapsed, run = through_operator(cluster, kubelet, ns, name, spec, phases)
            via_operator.append(elapsed)
            last_command, last_env = list(run.command), dict(run.env)
            cluster.kubectl("delete", "tcd", name, "-n", ns, "--wait=true", check=True)

            def stopped(r: Any = run) -> bool:
                return r.process is None or r.process.poll() is not None

            wait_for(
                stopped,
                timeout=120,
                message="pod process stopped",
            )
            if not first_direct:
                direct.append(directly(last_command, last_env, work))
            print(
                f"trial {trial}: operator {via_operator[-1]:.1f} s {phases[-1]}, direct {direct[-1]:.1f} s",
                flush=True,
            )
    finally:
        kubelet.stop()
        stop_operator(cluster, op)
        subprocess.run(
            ["bash", str(ROOT / "hack" / "cluster.sh"), "down"],
            env={**os.environ, "TELECHAT_CLUSTER_DIR": str(cluster.dir)},
            check=False,
        )
    result = {
        "trials": args.trials,
        "operator_apply_to_ready_s": via_operator,
        "direct_start_to_healthy_s": direct,
        "median_operator_s": statistics.median(via_operator),
        "median_direct_s": statistics.median(direct),
        "median_overhead_s": statistics.median(via_operator) - statistics.median(direct),
        "operator_phases": phases,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "vllm_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
