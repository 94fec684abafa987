"""The controller under test as a child process (the operator, or the floor), and what it costs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .cluster import ROOT, _env


def _peak_rss(pid: int) -> int | None:
    """The kernel's high-water mark of the process's resident memory (VmHWM), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Sample:
    t: float
    rss: int
    cpu: float


@dataclass
class Controller:
    """One run of the operator or the floor; ``mode`` is "operator" or "floor"."""

    mode: str
    namespace: str
    kubeconfig: Path
    workdir: Path
    resync: float
    profile: str | None = None  # "cprofile" or "py-spy"
    experiments: tuple[str, ...] = ()  # proposed fixes patched into the operator (bench.experiments)
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    samples: list[Sample] = field(default_factory=list)
    _sampler: asyncio.Task[None] | None = None
    _spy: subprocess.Popen[bytes] | None = None

    @property
    def stats_file(self) -> Path:
        return self.workdir / f"{self.mode}-{self.namespace}.stats.json"

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.mode}-{self.namespace}.log"

    @property
    def profile_file(self) -> Path:
        suffix = ".prof" if self.profile == "cprofile" else ".txt"
        return self.workdir / f"{self.mode}-{self.namespace}.profile{suffix}"

    def start(self) -> None:
        env = _env(self.kubeconfig.parent)
        env.pop("TELECHAT_CLUSTER_DIR", None)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(ROOT)
        env["TELECHAT_BENCH_EXPERIMENTS"] = ",".join(self.experiments)
        ready = self.workdir / f"{self.mode}-{self.namespace}.ready"
        ready.unlink(missing_ok=True)
        self.stats_file.unlink(missing_ok=True)
        if self.mode == "operator":
            cmd = [sys.executable, "-m", "bench.opproc", "--stats", str(self.stats_file)]
            if self.profile == "cprofile":
                cmd += ["--profile", str(self.profile_file)]
            cmd += ["--", "run", "--standalone", "--resync", str(self.resync)]
        else:
            cmd = [
                sys.executable, "-m", "bench.floor", "--kubeconfig", str(self.kubeconfig),
                "--namespace", self.namespace, "--ready-file", str(ready), "--stats", str(self.stats_file),
            ]  # fmt: skip
        log = self.log_file.open("wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.ps = psutil.Process(self.proc.pid)
        if self.profile == "py-spy":
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            self._spy = subprocess.Popen(
                [spy, "record", "--pid", str(self.proc.pid), "--rate", "200", "--format", "raw",
                 "--output", str(self.profile_file), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        self._sampler = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        assert self.ps is not None
        while True:
            with contextlib.suppress(psutil.Error):
                cpu = self.ps.cpu_times()
                self.samples.append(
                    Sample(time.perf_counter(), self.ps.memory_info().rss, cpu.user + cpu.system)
                )
            await asyncio.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        assert self.ps is not None
        cpu = self.ps.cpu_times()
        return float(cpu.user + cpu.system)

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    def peak_rss(self) -> int:
        assert self.proc is not None
        peak = _peak_rss(self.proc.pid)
        sampled = max((s.rss for s in self.samples), default=0)
        return max(peak or 0, sampled)

    async def fresh_stats(self) -> dict[str, Any]:
        """The counters as of now: ask the process to write them (SIGUSR1), then read them."""
        if self.proc is not None and self.proc.poll() is None:
            before = self.stats_file.stat().st_mtime_ns if self.stats_file.exists() else 0
            self.proc.send_signal(signal.SIGUSR1)
            for _ in range(20):
                await asyncio.sleep(0.05)
                if self.stats_file.exists() and self.stats_file.stat().st_mtime_ns != before:
                    break
        return self.stats()

    def stats(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.stats_file.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready_file(self, timeout: float = 60) -> None:
        ready = self.workdir / f"{self.mode}-{self.namespace}.ready"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready.exists():
            if not self.alive():
                raise RuntimeError(f"{self.mode} exited early:\n{self.log_tail()}")
            if loop.time() > deadline:
                raise TimeoutError(f"{self.mode} not ready after {timeout:g} s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def stop(self) -> dict[str, Any]:
        """Stop the process (SIGTERM, then SIGKILL after 15 s); returns its final counters."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._spy.wait(30)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while self.proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.stats()


def workdir() -> Path:
    path = Path(os.environ.get("TELECHAT_BENCH_WORKDIR", "/tmp/telechat-bench-work"))
    path.mkdir(parents=True, exist_ok=True)
    return path
