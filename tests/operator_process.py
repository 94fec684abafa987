"""Run the operator from the working tree as a real process against the local control plane.

Tests talk to it only through the API server, like users do. It is started with the webhook in dev mode
(self-signed, registered by the operator on a loopback port) and stopped by pid.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT, Cluster, wait_for

CRD_DIR = ROOT / "crds"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR), check=True)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR), check=True)


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    webhook_port: int
    health_port: int

    def log(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as rsp:
                return bool(rsp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_operator(
    cluster: Cluster,
    *,
    namespaces: tuple[str, ...] = (),
    resync: float = 5.0,
    webhook: bool = True,
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    name: str = "operator",
    debug: bool = False,
) -> OperatorProcess:
    """Start `telechat-operator run` and wait until it serves its health endpoint (and webhook)."""
    install_crds(cluster)
    webhook_port, health_port = free_port(), free_port()
    log_dir = cluster.dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{webhook_port}.log"
    args = [
        sys.executable,
        "-m",
        "telechat_operator.cli",
        "run",
        "--standalone",
        "-v",
        "--resync",
        str(resync),
        "--liveness",
        f"http://127.0.0.1:{health_port}/healthz",
        "--webhook",
        "dev" if webhook else "off",
        "--webhook-port",
        str(webhook_port),
    ]
    if debug:
        args.append("--debug")  # kopf and the operator at DEBUG (the leak scan reads this log)
    for ns in namespaces:
        args += ["-n", ns]
    args += extra_args
    env = dict(cluster.env)
    env.update(extra_env or {})
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    op = OperatorProcess(proc=proc, log_path=log_path, webhook_port=webhook_port, health_port=health_port)
    try:
        wait_for(lambda: op.healthy() or not op.alive(), timeout=60, message="operator health endpoint")
        if not op.alive():
            raise AssertionError(f"operator exited at start:\n{op.log()}")
        if webhook:
            wait_for(
                lambda: (
                    f":{webhook_port}/"
                    in cluster.kubectl(
                        "get",
                        "validatingwebhookconfiguration",
                        "telechat.ai",
                        "-o",
                        "jsonpath={.webhooks[0].clientConfig.url}",
                    ).stdout
                ),
                timeout=60,
                message="the operator's validating webhook registration",
            )
    except BaseException:
        op.stop()
        raise
    return op


def stop_operator(cluster: Cluster, op: OperatorProcess) -> None:
    op.stop()
    # The dev-mode webhook points at a port nobody serves any more; remove it (failurePolicy is Ignore).
    cluster.kubectl("delete", "validatingwebhookconfiguration", "telechat.ai", "--ignore-not-found")
    cluster.kubectl("delete", "mutatingwebhookconfiguration", "telechat.ai", "--ignore-not-found")


def wait_until(seconds: float) -> None:
    """Sleep for a settling window (used only where the test asserts that nothing happens)."""
    time.sleep(seconds)
