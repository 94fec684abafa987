"""One local node: plays the kubelet for a Node and runs the pods bound to it as local processes.

The one kubelet stand-in of the tree: the demo, the end-to-end suites and the vLLM overhead benchmark use
it. They have no container runtime and no GPU, but they must run the exact command, arguments,
environment and mounted ConfigMap files the operator rendered:

- volumes become local folders: a ConfigMap's keys (or its ``items``) are written as files, an emptyDir
  is a fresh folder, a PersistentVolumeClaim is the hostPath of the PersistentVolume bound to it;
- the image becomes a local Python environment (``python3`` in the command resolves to it) plus the
  environment variables a CPU image would set (``image_env``, by default ``CPU_IMAGE_ENV``);
- container paths in arguments, environment values and ConfigMap files are rewritten to those folders
  (a Job pod's ``/dev/termination-log`` too). Every rewrite is recorded in ``PodRun.substitutions``;
- serving pods (restartPolicy Always): vLLM is told to listen on loopback on a free port instead of
  0.0.0.0:8000 (pods have their own network namespace; this machine does not); the pod's own startup and
  readiness probes decide readiness, written to the pod's status like a kubelet does; when the process
  exits, its last log lines become the termination message (FallbackToLogsOnError) and the container
  shows CrashLoopBackOff;
- Job pods (restartPolicy Never): the process runs to its end; the pod becomes Succeeded or Failed with
  the exit code and the termination message (the file the container wrote, else its last log lines),
  which is what the Job controller and the operator read.

Processes are started in their own session and stopped by pid (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch

TERMINATION_LOG_LINES = 80
TERMINATION_LOG_BYTES = 4096
TERMINATION_LOG = "/dev/termination-log"
# What a vLLM CPU image would set; the node adds these to the container's own environment.
CPU_IMAGE_ENV = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _runs_to_completion(pod: dict[str, Any]) -> bool:
    """A Job's pod (restartPolicy Never or OnFailure) runs to its end; a serving pod is probed."""
    return bool(pod["spec"].get("restartPolicy", "Always") != "Always")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PodRun:
    """One pod's local process and what was rewritten to run it."""

    namespace: str
    name: str
    uid: str
    workdir: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    substitutions: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready: bool = False
    exit_code: int | None = None
    # A Job pod's termination message, and how long its process ran.
    message: str = ""
    seconds: float = 0.0
    # Set when a Job pod's process ended and its final status was written.
    finished: threading.Event = field(default_factory=threading.Event)
    # time.monotonic() when the process started and when its readiness probe first passed (benchmarks).
    started_at: float | None = None
    ready_at: float | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = TERMINATION_LOG_LINES) -> str:
        """The termination message a kubelet would record: the last lines, capped in size."""
        text = self.log_text()
        tail = "\n".join(text.splitlines()[-lines:])
        return tail[-TERMINATION_LOG_BYTES:]

    @property
    def termination_log(self) -> Path:
        return self.workdir / "termination-log"


class LocalNode:
    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        python: str,
        workdir: Path,
        *,
        image_env: dict[str, str] | None = None,
        gpus: int = 1,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.node_name = node_name
        self.python = python
        self.workdir = workdir
        self.image_env = dict(CPU_IMAGE_ENV if image_env is None else image_env)
        self.gpus = gpus
        self.labels = dict(labels or {})
        self.runs: dict[str, PodRun] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # --- the node ----------------------------------------------------------------------------------
    def _node_status(self) -> dict[str, Any]:
        capacity = {"cpu": "8", "memory": "32Gi", "pods": "16", "nvidia.com/gpu": str(self.gpus)}
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "local node for the demo and end-to-end tests",
                    "lastHeartbeatTime": _now(),
                    "lastTransitionTime": _now(),
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "v1.36.3-local",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "local://process",
                "kernelVersion": os.uname().release,
                "osImage": "local",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def register(self) -> None:
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux", **self.labels}
        # A plain dict body: the official client sends it as it is (its types name only its models).
        body: Any = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": labels},
        }
        try:
            self.core.create_node(body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(self.node_name, {"status": self._node_status()})
        self._spawn(self._heartbeat)
        self._spawn(self._watch_pods)

    def _heartbeat(self) -> None:
        """Keep the node Ready: renew its Lease and status, as the node lifecycle controller expects."""
        while not self._stop.wait(10):
            try:
                self.core.patch_node_status(
                    self.node_name, {"status": {"conditions": self._node_status()["conditions"]}}
                )
                renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                lease: Any = {
                    "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                    "spec": {
                        "holderIdentity": self.node_name,
                        "leaseDurationSeconds": 40,
                        "renewTime": renew,
                    },
                }
                try:
                    self.coordination.patch_namespaced_lease(self.node_name, "kube-node-lease", lease)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
                    self.coordination.create_namespaced_lease("kube-node-lease", lease)
            except Exception as exc:  # keep beating; a test failure will show elsewhere
                print(f"[local-node] heartbeat failed: {exc}", flush=True)

    def _spawn(self, target: Any, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    # --- pods --------------------------------------------------------------------------------------
    def _watch_pods(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=f"spec.nodeName={self.node_name}",
                    timeout_seconds=5,
                ):
                    if self._stop.is_set():
                        break
                    pod = event["object"]
                    uid = pod.metadata.uid
                    with self._lock:
                        known = uid in self.runs
                    if pod.metadata.deletion_timestamp is not None:
                        if known or event["type"] != "DELETED":
                            self._spawn(self._terminate, pod.metadata.namespace, pod.metadata.name, uid)
                    elif not known and event["type"] in ("ADDED", "MODIFIED"):
                        run = PodRun(pod.metadata.namespace, pod.metadata.name, uid, self.workdir / uid)
                        with self._lock:
                            self.runs[uid] = run
                        self._spawn(self._start, run, self.core.api_client.sanitize_for_serialization(pod))
            except Exception as exc:
                if not self._stop.is_set():
                    print(f"[local-node] watch failed, retrying: {exc}", flush=True)
                    time.sleep(1)

    def _volume_dirs(self, pod: dict[str, Any], run: PodRun) -> dict[str, Path]:
        ns = pod["metadata"]["namespace"]
        dirs: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            local = run.workdir / "volumes" / name
            if "configMap" in volume:
                ref = volume["configMap"]
                data = self.core.read_namespaced_config_map(ref["name"], ns).data or {}
                local.mkdir(parents=True, exist_ok=True)
                for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    (local / item["path"]).write_text(data[item["key"]])
            elif "emptyDir" in volume:
                if volume["emptyDir"].get("medium") == "Memory":
                    continue  # /dev/shm: the host's own
                local.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in volume:
                claim = self._read(
                    self.core.read_namespaced_persistent_volume_claim(
                        volume["persistentVolumeClaim"]["claimName"], ns
                    )
                )
                pv = self._read(self.core.read_persistent_volume(claim["spec"]["volumeName"]))
                if "hostPath" not in pv["spec"]:
                    raise RuntimeError(f"PV {pv['metadata']['name']} is not a hostPath volume")
                local = Path(pv["spec"]["hostPath"]["path"])
            elif "secret" in volume:
                secret = self.core.read_namespaced_secret(volume["secret"]["secretName"], ns)
                local.mkdir(parents=True, exist_ok=True)
                for key, value in (secret.data or {}).items():
                    (local / key).write_bytes(base64.b64decode(value))
            else:
                raise RuntimeError(f"volume {name}: type not supported by the local node")
            dirs[name] = local
        return dirs

    def _read(self, model: Any) -> dict[str, Any]:
        """An object the official client read, as the plain dict the API server sent."""
        found: dict[str, Any] = self.core.api_client.sanitize_for_serialization(model)
        return found

    def _env_value(self, pod: dict[str, Any], item: dict[str, Any]) -> str | None:
        ns = pod["metadata"]["namespace"]
        if "value" in item:
            return str(item["value"])
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            label = re.fullmatch(r"metadata\.labels\['(.+)'\]", source["fieldRef"]["fieldPath"])
            if label is None:
                raise RuntimeError(f"env {item['name']}: fieldRef not supported by the local node")
            return str(pod["metadata"].get("labels", {}).get(label.group(1), ""))
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = self.core.read_namespaced_secret(ref["name"], ns)
            return base64.b64decode((secret.data or {})[ref["key"]]).decode()
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return str((self.core.read_namespaced_config_map(ref["name"], ns).data or {})[ref["key"]])
        return None

    @staticmethod
    def _rewrite(text: str, mounts: dict[str, str]) -> str:
        """Replace container paths by local folders in one pass (a replacement is never rewritten again)."""
        if not mounts:
            return text
        # Longest first, so /model-cache is not taken for /model; a path starts after a non-path character.
        alternatives = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=/|$|[^\w.-])")
        return pattern.sub(lambda m: mounts[m.group(1)], text)

    def _prepare(self, run: PodRun, pod: dict[str, Any]) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        volume_dirs = self._volume_dirs(pod, run)
        mounts = {
            m["mountPath"]: str(volume_dirs[m["name"]])
            for m in container.get("volumeMounts") or []
            if m["name"] in volume_dirs
        }
        if _runs_to_completion(pod):
            # A Job pod's runner reports in its termination message (a serving pod's vLLM writes none).
            mounts[container.get("terminationMessagePath") or TERMINATION_LOG] = str(run.termination_log)
        # ConfigMap files may name other mounted paths (vllm.yaml names the chat template): rewrite them.
        for volume in pod["spec"].get("volumes") or []:
            if "configMap" in volume and volume["name"] in volume_dirs:
                for path in volume_dirs[volume["name"]].iterdir():
                    original = path.read_text()
                    rewritten = self._rewrite(original, mounts)
                    if rewritten != original:
                        path.write_text(rewritten)
        command = [*container.get("command", []), *container.get("args", [])]
        if command and command[0] in ("python3", "python"):
            run.substitutions[f"image {container['image']} ({command[0]})"] = self.python
            command[0] = self.python
        command = [self._rewrite(part, mounts) for part in command]
        run.substitutions.update({f"mount {k}": v for k, v in mounts.items()})
        if not _runs_to_completion(pod):
            run.port = free_port()
            # The pod would listen on 0.0.0.0:8000 in its own network namespace; here: loopback, a free port.
            command += ["--host", "127.0.0.1", "--port", str(run.port)]
            run.substitutions["listen 0.0.0.0:8000"] = f"127.0.0.1:{run.port}"
        env = {
            "PATH": f"{Path(self.python).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            **self.image_env,
        }
        for item in container.get("env") or []:
            value = self._env_value(pod, item)
            if value is not None:
                env[item["name"]] = self._rewrite(value, mounts)
        run.command, run.env = command, env
        return dict(container)

    def _start(self, run: PodRun, pod: dict[str, Any]) -> None:
        try:
            container = self._prepare(run, pod)
        except Exception as exc:
            self._patch_status(run, self._waiting_status(pod, "CreateContainerConfigError", str(exc)))
            return
        run.workdir.mkdir(parents=True, exist_ok=True)
        run.log_path = run.workdir / "container.log"
        (run.workdir / "substitutions.json").write_text(json.dumps(run.substitutions, indent=2))
        (run.workdir / "command.json").write_text(json.dumps(run.command, indent=2))
        with run.log_path.open("wb") as log:
            run.process = subprocess.Popen(
                run.command,
                env=run.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=run.workdir,
                start_new_session=True,
            )
        run.started_at = time.monotonic()
        started = _now()
        self._patch_status(run, self._running_status(pod, started, ready=False))
        if _runs_to_completion(pod):
            self._wait_exit(run, pod, started)
        else:
            self._probe_loop(run, pod, container, started)

    def _wait_exit(self, run: PodRun, pod: dict[str, Any], started: str) -> None:
        """A Job pod: wait for the process, then report Succeeded or Failed as the kubelet does."""
        assert run.process is not None and run.started_at is not None
        while run.process.poll() is None and not run.stopping.is_set() and not self._stop.is_set():
            time.sleep(0.5)
        code = run.process.poll()
        if code is None:  # stopped with the node or the pod
            return
        run.exit_code, run.seconds = code, time.monotonic() - run.started_at
        written = run.termination_log.read_text() if run.termination_log.exists() else ""
        run.message = written[-TERMINATION_LOG_BYTES:]
        container = pod["spec"]["containers"][0]
        if (
            not run.message
            and code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            run.message = run.log_tail()
        self._patch_status(run, self._finished_status(pod, run, code, started))
        run.finished.set()

    def _probe(self, run: PodRun, probe: dict[str, Any] | None) -> bool:
        if not probe:
            return True
        path = probe.get("httpGet", {}).get("path", "/")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{run.port}{path}", timeout=probe.get("timeoutSeconds", 1)
            ) as rsp:
                return bool(200 <= rsp.status < 400)
        except OSError:
            return False

    def _probe_loop(self, run: PodRun, pod: dict[str, Any], container: dict[str, Any], started: str) -> None:
        assert run.process is not None
        startup = container.get("startupProbe")
        readiness = container.get("readinessProbe")
        budget = (startup or {}).get("periodSeconds", 10) * (startup or {}).get("failureThreshold", 3)
        deadline = time.monotonic() + budget
        started_ok = startup is None
        while not run.stopping.is_set() and not self._stop.is_set():
            code = run.process.poll()
            if code is not None:
                run.exit_code = code
                self._patch_status(run, self._crashed_status(pod, run, code, started))
                return
            if not started_ok:
                started_ok = self._probe(run, startup)
                if not started_ok and time.monotonic() > deadline:
                    # A kubelet kills the container when the startup probe fails for its whole budget.
                    self._kill(run)
                    continue
            if started_ok:
                ready = self._probe(run, readiness)
                if ready != run.ready:
                    run.ready = ready
                    if ready and run.ready_at is None:
                        run.ready_at = time.monotonic()
                    self._patch_status(run, self._running_status(pod, started, ready=ready))
            time.sleep(1.0)

    # --- pod status, as a kubelet writes it -------------------------------------------------------
    def _conditions(self, ready: bool) -> list[dict[str, Any]]:
        now = _now()
        flag = "True" if ready else "False"
        return [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ]

    def _base(self, pod: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": pod["status"].get("startTime") or _now(),
            "conditions": self._conditions(ready),
        }

    def _running_status(self, pod: dict[str, Any], started: str, ready: bool) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        status = self._base(pod, ready)
        status["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": started}},
            }
        ]
        return status

    def _crashed_status(self, pod: dict[str, Any], run: PodRun, code: int, started: str) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        status = self._base(pod, False)
        message = (
            run.log_tail() if container.get("terminationMessagePolicy") == "FallbackToLogsOnError" else ""
        )
        status["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 1,
                "started": False,
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container {container['name']}",
                    }
                },
                "lastState": {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Error",
                        "message": message,
                        "startedAt": started,
                        "finishedAt": _now(),
                    }
                },
            }
        ]
        return status

    def _finished_status(self, pod: dict[str, Any], run: PodRun, code: int, started: str) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        status = self._base(pod, False)
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "message": run.message,
            "startedAt": started,
            "finishedAt": _now(),
        }
        status["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ]
        return status

    def _waiting_status(self, pod: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        status = self._base(pod, False)
        status["phase"] = "Pending"
        status["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ]
        return status

    def _patch_status(self, run: PodRun, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, {"status": status})
        except client.ApiException as exc:
            if exc.status != 404:
                print(f"[local-node] status of {run.namespace}/{run.name}: {exc}", flush=True)

    # --- stopping ---------------------------------------------------------------------------------
    @staticmethod
    def _kill(run: PodRun, grace: float = 15.0) -> None:
        proc = run.process
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _terminate(self, namespace: str, name: str, uid: str) -> None:
        with self._lock:
            run = self.runs.pop(uid, None)
        if run is not None:
            run.stopping.set()
            self._kill(run)
        try:  # the kubelet confirms a graceful deletion once the containers are gone
            # The grace period goes in the body: given a body, the API server ignores the query parameter.
            options = client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
            )
            self.core.delete_namespaced_pod(name, namespace, body=options)
        except client.ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def bound_pod(self, namespace: str) -> dict[str, Any] | None:
        """A pod of ``namespace`` bound to this node (as the API server has it), if any."""
        pods = self.core.list_namespaced_pod(
            namespace, field_selector=f"spec.nodeName={self.node_name}"
        ).items
        found: dict[str, Any] | None = (
            self.core.api_client.sanitize_for_serialization(pods[0]) if pods else None
        )
        return found

    def finished(self, pod: dict[str, Any], timeout: float = 900) -> PodRun:
        """Wait for a Job pod's process to end and its status to be written; its run."""
        deadline = time.monotonic() + timeout
        uid = pod["metadata"]["uid"]
        while True:
            with self._lock:
                run = self.runs.get(uid)
            if run is not None and run.finished.wait(timeout=0.5):
                if run.exit_code != 0:
                    print(run.log_text()[-6000:])
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {pod['metadata']['name']} did not finish within {timeout:.0f} s")
            time.sleep(0.1 if run is not None else 0.5)

    def run_for(self, namespace: str, name_prefix: str) -> PodRun | None:
        with self._lock:
            for run in self.runs.values():
                if (
                    run.namespace == namespace
                    and run.name.startswith(name_prefix)
                    and not run.stopping.is_set()
                ):
                    return run
        return None

    def stop(self, delete_node: bool = True) -> None:
        self._stop.set()
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            run.stopping.set()
            self._kill(run, grace=10)
        for thread in self._threads:
            thread.join(timeout=15)
        if delete_node:
            try:
                self.core.delete_node(self.node_name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def main(argv: list[str] | None = None) -> int:
    """Run as a daemon (the demo): serve pods bound to one node until SIGTERM."""
    import argparse

    from kubernetes import config

    parser = argparse.ArgumentParser(description="Run the pods bound to one node as local processes.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument(
        "--python", required=True, help="python of the environment that stands in for the image"
    )
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--label", action="append", default=[], help="node label key=value (repeatable)")
    parser.add_argument(
        "--env",
        action="append",
        default=None,
        help="image environment KEY=VALUE (repeatable; default: the vLLM CPU image's, CPU_IMAGE_ENV)",
    )
    args = parser.parse_args(argv)

    api = config.new_client_from_config(config_file=args.kubeconfig)
    kubelet = LocalNode(
        api,
        args.node,
        args.python,
        args.workdir,
        gpus=args.gpus,
        labels=dict(item.split("=", 1) for item in args.label),
        image_env=dict(item.split("=", 1) for item in args.env) if args.env is not None else None,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    kubelet.register()
    print(f"[local-node] node {args.node} registered; running its pods", flush=True)
    while not stop.wait(1):
        for run in list(kubelet.runs.values()):
            (args.workdir / "endpoints").mkdir(parents=True, exist_ok=True)
            (args.workdir / "endpoints" / f"{run.namespace}_{run.name}").write_text(
                f"http://127.0.0.1:{run.port}/v1\n"
            )
    kubelet.stop(delete_node=True)
    print("[local-node] stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
