"""SIGTERM while the API server is unreachable: the operator exits within seconds instead of hanging on
calls that cannot complete (a node losing the control plane, or a cluster torn down under it)."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time

import pytest
from tests.helpers import Cluster
from tests.operator_process import start_operator
from tests.tcp_proxy import TcpProxy

# What "promptly" means here: well inside a kubelet's default 30 s grace period.
EXIT_WITHIN_S = 10.0


@pytest.mark.parametrize("webhook", [False, True], ids=["no-webhook", "webhook"])
@pytest.mark.parametrize("leader_elect", [False, True], ids=["standalone", "leader-elect"])
@pytest.mark.parametrize("gone", ["refused", "partitioned"])
def test_sigterm_with_the_api_server_gone_exits_promptly(
    cluster: Cluster, gone: str, leader_elect: bool, webhook: bool
) -> None:
    text = cluster.kubeconfig.read_text()
    match = re.search(r"server: https://127\.0\.0\.1:(\d+)", text)
    assert match, "the local kubeconfig names its API server on loopback"
    proxy = TcpProxy(("127.0.0.1", int(match.group(1))))
    kubeconfig = cluster.dir / f"kubeconfig-via-{proxy.port}"
    kubeconfig.write_text(text.replace(match.group(0), f"server: https://127.0.0.1:{proxy.port}"))
    lease = ("--leader-elect", f"--leader-elect-name=shutdown-{proxy.port}") if leader_elect else ()
    op = start_operator(
        cluster,
        webhook=webhook,
        extra_env={"KUBECONFIG": str(kubeconfig)},
        extra_args=lease,
        name="shutdown",
    )
    try:
        time.sleep(2)  # let its watches start through the proxy
        proxy.cut() if gone == "refused" else proxy.freeze()
        time.sleep(2)  # and notice that the server is gone
        started = time.monotonic()
        op.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            op.proc.wait(timeout=60)
        elapsed = time.monotonic() - started
        print(f"exited after {elapsed:.2f} s")
        assert op.proc.poll() is not None and elapsed < EXIT_WITHIN_S, (
            f"still running {elapsed:.1f} s after SIGTERM without an API server:\n{op.log(40)}"
        )
    finally:
        op.stop()
        kubeconfig.unlink(missing_ok=True)
