"""The benchmark's own local control plane (hack/cluster.sh in a separate state folder) and its setup."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .kubeapi import Api, ApiError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(os.environ.get("TELECHAT_BENCH_CLUSTER_DIR", "/tmp/telechat-bench-cluster"))


def _env(cluster_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECHAT_") or k == "TELECHAT_TOOLS_DIR"}
    env["TELECHAT_CLUSTER_DIR"] = str(cluster_dir)
    env["PATH"] = f"{ROOT / '.tools' / 'bin'}:{env.get('PATH', '')}"
    return env


@dataclass
class BenchCluster:
    dir: Path = DEFAULT_DIR

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def up(self) -> None:
        subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "up"], env=_env(self.dir), check=True)

    def down(self) -> None:
        subprocess.run(["bash", str(ROOT / "hack" / "cluster.sh"), "down"], env=_env(self.dir), check=False)

    def kubectl(self, *args: str) -> str:
        kubectl = ROOT / ".tools" / "bin" / "kubectl"
        proc = subprocess.run(
            [str(kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout

    def install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))

    def pid(self, component: str) -> int | None:
        path = self.dir / "pids" / f"{component}.pid"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None


def _node_template() -> dict[str, Any]:
    for doc in yaml.safe_load_all((ROOT / "hack" / "cluster" / "nodes.yaml").read_text()):
        if doc and doc.get("metadata", {}).get("name") == "gpu-h100-0":
            return dict(doc)
    raise RuntimeError("hack/cluster/nodes.yaml has no gpu-h100-0 node to copy")


async def add_gpu_nodes(api: Api, count: int) -> list[str]:
    """Extra fake 8-GPU nodes (kwok runs them), so every latency trial's pod can be scheduled."""
    template = _node_template()
    names = []
    for i in range(count):
        node = copy.deepcopy(template)
        name = f"bench-gpu-{i:03d}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        for address in node["status"].get("addresses") or []:
            if address["type"] == "Hostname":
                address["address"] = name
            else:
                address["address"] = f"10.2.{i // 250}.{i % 250 + 1}"
        try:
            await api.request("POST", "/api/v1/nodes", node)
        except ApiError as exc:
            if exc.status != 409:
                raise
        names.append(name)
    return names


async def nodes_ready(api: Api, names: list[str], timeout: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        listed = await api.request("GET", "/api/v1/nodes")
        assert listed is not None
        ready = set()
        for node in listed.get("items") or []:
            taints = (node.get("spec") or {}).get("taints") or []
            for cond in (node.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Ready" and cond.get("status") == "True" and not taints:
                    ready.add(node["metadata"]["name"])
        if set(names) <= ready:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"nodes not ready after {timeout:g} s: {sorted(set(names) - ready)[:5]}")
        await asyncio.sleep(0.5)


async def delete_leftovers(api: Api, prefix: str = "bench-") -> list[str]:
    """Namespaces an interrupted earlier run left behind: the operator watches the whole cluster."""
    listed = await api.request("GET", "/api/v1/namespaces")
    names = [n["metadata"]["name"] for n in (listed or {}).get("items") or []]
    left = [n for n in names if n.startswith(prefix)]
    await asyncio.gather(*(delete_namespace(api, n) for n in left))
    return left


async def create_namespace(api: Api, name: str) -> None:
    await delete_namespace(api, name)
    await api.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    # The service-account controller must have made the default ServiceAccount before pods can be created.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (
        await api.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", ok_missing=True)
        is None
    ):
        if loop.time() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {name}")
        await asyncio.sleep(0.2)


async def delete_namespace(api: Api, name: str, timeout: float = 600) -> float:
    """Delete a namespace and wait until it is gone; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await api.request("DELETE", f"/api/v1/namespaces/{name}", ok_missing=True)
    while await api.request("GET", f"/api/v1/namespaces/{name}", ok_missing=True) is not None:
        if loop.time() - start > timeout:
            raise TimeoutError(f"namespace {name} still there after {timeout:g} s")
        await asyncio.sleep(0.5)
    return loop.time() - start
