"""Pure status derivation for a TeleChatDeployment: what its Deployment and pods say, as conditions.

Readiness is vLLM's own: a pod is Ready only once its readiness probe on /health passes, which vLLM answers
only after the weights are loaded. Pod-level problems (unschedulable, image pulls, crash loops with vLLM's
last log lines) are reported with the pod's own words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.status import DEGRADED, PROGRESSING, READY, SPEC_VALID
from ..controller.conditions import Cond
from ..controller.pods import PodProblem, pod_problems
from ..controller.status import Derived


@dataclass
class Observation:
    generation: int | None
    desired_replicas: int
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]]
    spec_errors: list[str] = field(default_factory=list)
    spec_error_reason: str = "InvalidSpec"
    notes: list[str] = field(default_factory=list)
    apply_error: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpus_per_replica: int = 0
    # GPU planning: the most GPUs of this resource any node offers (None when nodes are not watched).
    largest_node_gpus: int | None = None


@dataclass(frozen=True)
class Replicas:
    """The figures `kubectl get` and the scale subresource show: pods that exist, pods that are ready."""

    pods: int
    ready: int


def _rollout(deployment: dict[str, Any], desired: int) -> tuple[bool, int, int]:
    """(rollout complete, pods, ready pods) from a Deployment's status."""
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    replicas = status.get("replicas", 0)
    updated = status.get("updatedReplicas", 0)
    ready = status.get("readyReplicas", 0)
    done = current and updated == desired and replicas == desired
    return done, replicas, ready


def _deadline_exceeded(deployment: dict[str, Any]) -> str | None:
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return str(cond.get("message") or "progress deadline exceeded")
    return None


def _gpu_hint(obs: Observation) -> str:
    if obs.largest_node_gpus is None or obs.gpus_per_replica <= obs.largest_node_gpus:
        return ""
    return (
        f" Each replica needs {obs.gpus_per_replica} {obs.gpu_resource} on one node; the largest node offers "
        f"{obs.largest_node_gpus}: lower tensorParallelSize x pipelineParallelSize or add bigger nodes."
    )


def _invalid(obs: Observation, summary: str, figures: Replicas) -> Derived[Replicas]:
    message = "; ".join(obs.spec_errors)
    keeping = f" The previous configuration keeps serving ({summary})." if obs.deployment is not None else ""
    return Derived(
        "Invalid",
        [
            Cond(READY, "False", obs.spec_error_reason, message + keeping),
            Cond(PROGRESSING, "False", obs.spec_error_reason, "waiting for a valid spec"),
            Cond(DEGRADED, "True", obs.spec_error_reason, message),
            Cond(SPEC_VALID, "False", obs.spec_error_reason, message),
        ],
        figures,
    )


def _problems(obs: Observation) -> list[PodProblem]:
    problems = pod_problems(obs.pods)
    if obs.apply_error:
        problems.insert(0, PodProblem("ApplyFailed", obs.apply_error))
    if obs.deployment is not None and (deadline := _deadline_exceeded(obs.deployment)):
        problems.append(PodProblem("ProgressDeadlineExceeded", deadline))
    return problems


def _progress(
    obs: Observation, done: bool, ready: int, summary: str, problems: list[PodProblem]
) -> tuple[str, Cond, Cond]:
    """(phase, Progressing, Ready) before pod problems are taken into account."""
    desired = obs.desired_replicas
    if obs.deployment is None:
        return (
            "Pending",
            Cond(PROGRESSING, "True", "Creating", "creating the vLLM Deployment"),
            Cond(READY, "False", "Creating", summary),
        )
    if desired == 0:
        return (
            "ScaledToZero",
            Cond(PROGRESSING, "False" if done else "True", "ScaledToZero", "no replicas requested"),
            Cond(READY, "True" if done else "False", "ScaledToZero", "no replicas requested"),
        )
    if done and ready >= desired:
        return (
            "Ready",
            Cond(PROGRESSING, "False", "RolloutComplete", summary),
            Cond(READY, "True", "ModelServing", f"{summary}; vLLM answers /health"),
        )
    scheduled = any(p.reason == "Unschedulable" for p in problems)
    reason = "RolloutInProgress" if not done else "ModelLoading"
    return (
        "Pending" if scheduled and ready == 0 else "Loading",
        Cond(PROGRESSING, "True", reason, summary),
        Cond(READY, "False", "Unschedulable" if scheduled else reason, summary),
    )


def derive(obs: Observation) -> Derived[Replicas]:
    dep = obs.deployment
    pods_total, ready = 0, 0
    done = False
    if dep is not None:
        done, pods_total, ready = _rollout(dep, obs.desired_replicas)
    summary = f"{ready}/{obs.desired_replicas} replicas ready"
    figures = Replicas(pods_total, ready)
    if obs.spec_errors:
        return _invalid(obs, summary, figures)

    valid = Cond(SPEC_VALID, "True", "Valid", "; ".join(obs.notes))
    problems = _problems(obs)
    phase, progressing, ready_cond = _progress(obs, done, ready, summary, problems)
    if problems:
        first = problems[0]
        message = "; ".join(p.message for p in problems[:5])
        if first.reason == "Unschedulable":
            message += _gpu_hint(obs)
        degraded = Cond(DEGRADED, "True", first.reason, message)
        if ready_cond.status == "False":
            ready_cond = Cond(READY, "False", first.reason, f"{summary}: {message}")
        if phase != "Pending":
            phase = "Degraded"
    else:
        degraded = Cond(DEGRADED, "False", "AsExpected", "")
    return Derived(phase, [ready_cond, progressing, degraded, valid], figures)
