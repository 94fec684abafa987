"""Status derivation from a Deployment and its pods."""

from __future__ import annotations

from typing import Any

from telechat_operator.controller.conditions import Cond, merge_conditions, transitions
from telechat_operator.controller.status import Derived
from telechat_operator.deployment.observe import Observation, Replicas, derive


def deployment(
    generation: int = 2, observed: int = 2, replicas: int = 1, updated: int = 1, ready: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
        },
    }


def conds(result: Derived[Replicas]) -> dict[str, Cond]:
    return {c.type: c for c in result.conditions}


def test_ready_when_rollout_complete_and_pods_ready() -> None:
    result = derive(Observation(generation=1, desired_replicas=1, deployment=deployment(), pods=[]))
    phase, pods, ready = result.phase, result.figures.pods, result.figures.ready
    assert (phase, pods, ready) == ("Ready", 1, 1)
    assert conds(result)["Ready"].status == "True"
    assert conds(result)["Progressing"].status == "False"


def test_loading_until_ready() -> None:
    result = derive(Observation(generation=1, desired_replicas=1, deployment=deployment(ready=0), pods=[]))
    assert result.phase == "Loading"
    assert conds(result)["Ready"].status == "False"
    assert conds(result)["Progressing"].reason == "ModelLoading"


def test_stale_deployment_is_a_rollout_in_progress() -> None:
    result = derive(
        Observation(
            generation=1, desired_replicas=1, deployment=deployment(generation=3, observed=2), pods=[]
        )
    )
    assert conds(result)["Progressing"].reason == "RolloutInProgress"
    assert conds(result)["Ready"].status == "False"


def test_unschedulable_pod_explains_gpu_shortage() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                }
            ]
        },
    }
    obs = Observation(
        generation=1,
        desired_replicas=1,
        deployment=deployment(ready=0),
        pods=[pod],
        gpus_per_replica=16,
        largest_node_gpus=8,
    )
    result = derive(obs)
    c = conds(result)
    assert result.phase == "Pending"
    assert c["Ready"].reason == "Unschedulable" and c["Degraded"].status == "True"
    assert "Insufficient nvidia.com/gpu" in c["Degraded"].message
    assert "largest node offers 8" in c["Degraded"].message


def test_crash_loop_surfaces_vllm_message() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "message": "ValueError: rope_scaling factor must be > 1",
                        }
                    },
                }
            ]
        },
    }
    result = derive(Observation(generation=1, desired_replicas=1, deployment=deployment(ready=0), pods=[pod]))
    c = conds(result)
    assert result.phase == "Degraded" and c["Degraded"].reason == "CrashLoopBackOff"
    assert "rope_scaling factor must be > 1" in c["Ready"].message


def test_invalid_spec_keeps_previous_serving_and_says_so() -> None:
    obs = Observation(
        generation=2, desired_replicas=1, deployment=deployment(), pods=[], spec_errors=["spec.x: bad"]
    )
    result = derive(obs)
    c = conds(result)
    assert result.phase == "Invalid" and c["SpecValid"].status == "False"
    assert "previous configuration keeps serving" in c["Ready"].message


def test_transition_time_kept_while_status_unchanged() -> None:
    first = merge_conditions([], [Cond("Ready", "False", "Creating")], "t1", 1)
    same = merge_conditions(first, [Cond("Ready", "False", "ModelLoading", "0/1")], "t2", 1)
    flipped = merge_conditions(same, [Cond("Ready", "True", "ModelServing")], "t3", 1)
    assert same[0]["lastTransitionTime"] == "t1"
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert [c["reason"] for c in transitions(first, same)] == ["ModelLoading"]
    assert transitions(same, same) == []
