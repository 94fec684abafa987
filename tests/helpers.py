"""Helpers shared by the tests: polling, tool paths, the cluster handle (importing needs no cluster)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = ROOT / ".tools" / "bin"

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions of the types in ``ignore`` count as "not yet" (e.g. a 404 before an object exists). On
    timeout raise AssertionError naming ``message`` and the last value or exception seen, so a failing
    test says what it was waiting for instead of sleeping and hoping.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}; last: {last!r}")
        time.sleep(interval)


def tool(name: str) -> Path:
    """Path of a control-plane binary, looked up as hack/cluster.sh does: $TELECHAT_TOOLS_DIR, .tools/bin."""
    tools_dir = os.environ.get("TELECHAT_TOOLS_DIR")
    if tools_dir and (Path(tools_dir) / name).is_file():
        return Path(tools_dir) / name
    return TOOLS_BIN / name


class Kubectl(Protocol):
    def __call__(
        self, *args: str, check: bool = False, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class Cluster:
    """The running local control plane."""

    dir: Path
    kubeconfig: Path
    started_here: bool
    env: dict[str, str] = field(repr=False)
    """Environment for subprocesses: KUBECONFIG set and .tools/bin first on PATH."""

    def kubectl(
        self, *args: str, check: bool = False, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run .tools/bin/kubectl against this cluster; raise on failure only when ``check``."""
        proc = subprocess.run(
            [str(tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc
