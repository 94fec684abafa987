"""`make demo`: a local control plane, the operator, and a tiny TeleChat2 served by real vLLM on the CPU.

Steps: start the cluster (hack/cluster.sh, state in .demo/cluster), install the CRDs, start the operator,
generate a random-weight TeleChat2 checkpoint, register a node whose pods run as local processes with the
vLLM CPU environment as their image (hack/local_node.py), apply examples/demo/telechat-tiny.yaml, wait
for the resource to be Ready (vLLM answering its probes), then print `kubectl get tcd` and a chat
completion made with the guide's OpenAI client code. Everything keeps running until `make demo-down`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
CLUSTER_DIR = DEMO / "cluster"
KUBECONFIG = CLUSTER_DIR / "kubeconfig"
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"
NAMESPACE = "telechat-demo"
NAME = "telechat-tiny"
NODE = "demo-local-vllm"
API_KEY = "demo-key"
VENV_PY = ROOT / ".venv" / "bin" / "python"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["TELECHAT_CLUSTER_DIR"] = str(CLUSTER_DIR)
    out["KUBECONFIG"] = str(KUBECONFIG)
    out["PATH"] = f"{ROOT / '.tools' / 'bin'}:{out.get('PATH', '')}"
    return out


def run(
    *args: str, check: bool = True, input: str | None = None, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), cwd=ROOT, env=env(), text=True, capture_output=True, input=input, check=False
    )
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip(), flush=True)
    if check and proc.returncode != 0:
        sys.exit(f"demo: {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc


def kubectl(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(str(KUBECTL), *args, **kw)


def start_daemon(name: str, args: list[str]) -> int:
    """Start a background process with its own session, log and pid file under .demo/."""
    pid_file = DEMO / f"{name}.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if _alive(pid):
            print(f"{name} already running (pid {pid})")
            return pid
    log = (DEMO / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pid_file.write_text(str(proc.pid))
    print(f"{name} started (pid {proc.pid}, log .demo/{name}.log)")
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_daemon(name: str) -> None:
    pid_file = DEMO / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        print(f"stopped {name} (pid {pid})")
    pid_file.unlink()


def vllm_python() -> str:
    proc = run("bash", "hack/vllm-env.sh", quiet=True)
    return proc.stdout.strip().splitlines()[-1]


def model_volume(model_dir: Path) -> None:
    import yaml

    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "telechat-demo-tiny-model"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "manual",
            "hostPath": {"path": str(model_dir)},
            "claimRef": {"namespace": NAMESPACE, "name": "tiny-model"},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "tiny-model", "namespace": NAMESPACE},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "manual",
            "volumeName": "telechat-demo-tiny-model",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all([pv, pvc]))


def wait_ready(timeout: float = 900) -> None:
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        proc = kubectl("get", "tcd", NAME, "-n", NAMESPACE, "-o", "json", check=False, quiet=True)
        if proc.returncode == 0:
            status = json.loads(proc.stdout).get("status") or {}
            conds = {c["type"]: c for c in status.get("conditions") or []}
            ready = conds.get("Ready", {})
            phase, counts = status.get("phase", "-"), status.get("ready", "-")
            line = f"phase={phase} ready={counts} ({ready.get('reason', '-')})"
            if line != last:
                print(f"  [{time.monotonic() - started:5.0f}s] {line}", flush=True)
                last = line
            if ready.get("status") == "True":
                return
            degraded = conds.get("Degraded", {})
            if degraded.get("status") == "True" and degraded.get("reason") == "CrashLoopBackOff":
                sys.exit(f"demo: vLLM failed:\n{degraded.get('message')}")
        time.sleep(2)
    sys.exit(f"demo: not Ready after {timeout:.0f} s; see .demo/local-node.log and .demo/operator.log")


def chat(base_url: str) -> None:
    from openai import OpenAI

    # The guide's client code; the model name is the resource's servedModelName.
    client = OpenAI(api_key=API_KEY, base_url=base_url)
    chat_response = client.chat.completions.create(
        model="telechat-tiny",
        messages=[{"role": "user", "content": "Tell me something about large language models."}],
        temperature=0.0,
        max_tokens=32,
        extra_body={
            "repetition_penalty": 1.05,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        },
    )
    print("Chat response:", chat_response)


def up() -> None:
    DEMO.mkdir(exist_ok=True)
    step("1/7 local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok GPU nodes)")
    run("bash", "hack/cluster.sh", "up")
    step("2/7 CRDs")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "crds/")
    kubectl("wait", "--for=condition=Established", "-f", "crds/", "--timeout=60s")
    step("3/7 the operator (validating webhook on 127.0.0.1:19443)")
    start_daemon(
        "operator",
        [
            str(VENV_PY),
            "-m",
            "telechat_operator.cli",
            "run",
            "--standalone",
            "--webhook",
            "dev",
            "--webhook-port",
            "19443",
            "--liveness",
            "http://127.0.0.1:19080/healthz",
        ],
    )
    step("4/7 vLLM CPU environment (first run installs it: a few minutes, ~6 GB, cached)")
    python = vllm_python()
    print(python)
    step("5/7 a tiny random-weight TeleChat2 checkpoint")
    models = DEMO / "models"
    if not (models / "telechat2" / "config.json").exists():
        run(python, "tests/e2e/tiny_telechat.py", str(models / "telechat2"))
    step("6/7 a node whose pods run locally with the vLLM CPU environment as their image")
    start_daemon(
        "local-node",
        [
            str(VENV_PY),
            "hack/local_node.py",
            "--kubeconfig",
            str(KUBECONFIG),
            "--node",
            NODE,
            "--python",
            python,
            "--workdir",
            str(DEMO / "kubelet"),
            "--gpus",
            "1",
            "--label",
            "telechat.ai/demo-node=true",
        ],
    )
    step("7/7 apply examples/demo/telechat-tiny.yaml and wait for vLLM to become Ready (about a minute)")
    kubectl("create", "namespace", NAMESPACE, check=False, quiet=True)
    kubectl(
        "create",
        "secret",
        "generic",
        "telechat-api-key",
        "-n",
        NAMESPACE,
        f"--from-literal=key={API_KEY}",
        check=False,
        quiet=True,
    )
    model_volume(models)
    kubectl("apply", "-n", NAMESPACE, "-f", "examples/demo/telechat-tiny.yaml")
    wait_ready()

    endpoint_file = DEMO / "kubelet" / "endpoints"
    deadline = time.monotonic() + 30
    base_url = ""
    while not base_url and time.monotonic() < deadline:
        files = sorted(endpoint_file.glob(f"{NAMESPACE}_{NAME}-*")) if endpoint_file.exists() else []
        base_url = files[-1].read_text().strip() if files else ""
        time.sleep(0.5)
    print()
    kubectl("get", "tcd", "-n", NAMESPACE)
    print()
    chat(base_url)
    print(
        f"""
The demo keeps running. Try:
  export KUBECONFIG={KUBECONFIG}
  .tools/bin/kubectl get tcd -n {NAMESPACE} -o yaml          # status, conditions, endpoint
  .tools/bin/kubectl scale tcd/{NAME} -n {NAMESPACE} --replicas=0
  curl -H 'Authorization: Bearer {API_KEY}' {base_url}/models
Logs: .demo/operator.log, .demo/local-node.log, .demo/kubelet/<pod uid>/container.log (vLLM)
Stop everything: make demo-down
"""
    )


def down() -> None:
    stop_daemon("local-node")
    stop_daemon("operator")
    run("bash", "hack/cluster.sh", "down", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--down", action="store_true", help="stop what the demo started")
    args = parser.parse_args()
    if args.down:
        down()
    else:
        up()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
