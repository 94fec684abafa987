"""Pod problems a user can act on, in the pod's own words: unschedulable, image pulls, crash loops, exits.

Any kind that runs vLLM pods reports these the same way (serving Deployments and batch Jobs alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_WAITING_PROBLEMS = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass
class PodProblem:
    reason: str
    message: str


def _container_problems(name: str, cs: dict[str, Any]) -> PodProblem | None:
    waiting = (cs.get("state") or {}).get("waiting") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    terminated = (cs.get("state") or {}).get("terminated") or {}
    if waiting.get("reason") in _WAITING_PROBLEMS:
        detail = waiting.get("message") or ""
        if last.get("message"):
            # vLLM's own last lines (terminationMessagePolicy: FallbackToLogsOnError).
            detail = f"exit code {last.get('exitCode')}: {last['message'].strip()}"
        return PodProblem(waiting["reason"], f"pod {name}: {detail}".strip())
    if terminated and terminated.get("exitCode", 0) != 0:
        text = (terminated.get("message") or terminated.get("reason") or "").strip()
        return PodProblem("EngineFailed", f"pod {name}: exit code {terminated.get('exitCode')}: {text}")
    return None


def pod_problems(pods: list[dict[str, Any]]) -> list[PodProblem]:
    problems: list[PodProblem] = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                reason = cond.get("reason") or "Unschedulable"
                problems.append(PodProblem(reason, f"pod {name}: {cond.get('message', '')}".strip()))
        for cs in status.get("containerStatuses") or []:
            problem = _container_problems(name, cs)
            if problem is not None:
                problems.append(problem)
    return problems
