"""Batch status derivation: phase, conditions and counts from the Job, its pods' termination messages and
the previous status."""

from __future__ import annotations

from typing import Any

import pytest

from telechat_operator.batch.observe import BatchObservation, derive, latest_failure, shard_summaries
from telechat_operator.batch.runner import ShardSummary


def job(
    *,
    completions: int = 1,
    active: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    conditions: list[Any] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"active": active, "succeeded": succeeded, "failed": failed}
    status["startTime"] = "2026-11-24T10:00:00Z"
    if conditions:
        status["conditions"] = conditions
    return {
        "kind": "Job",
        "metadata": {"name": "b-batch", "uid": "j1"},
        "spec": {"completions": completions},
        "status": status,
    }


def pod(
    name: str,
    index: int,
    phase: str,
    *,
    exit_code: int | None = None,
    message: str = "",
    finished: str = "T1",
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": finished}}
    return {
        "metadata": {"name": name, "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
        "status": {"phase": phase, "containerStatuses": [{"name": "vllm", "state": state}]},
    }


def summary(shard: int, shards: int, requests: int, ok: int, invalid: int = 0, total: int = 10) -> str:
    return ShardSummary(
        shard, shards, total, requests, ok, requests - ok, invalid, "/batch/output/o", True
    ).to_json()


def conds(derived: Any) -> dict[str, tuple[str, str]]:
    return {cond.type: (cond.status, cond.reason) for cond in derived.conditions}


def obs(**kwargs: Any) -> BatchObservation:
    base: dict[str, Any] = {"generation": 1, "previous": {}, "job": None, "pods": [], "output": "pvc://r/o"}
    base.update(kwargs)
    return BatchObservation(**base)


def test_no_job_yet_is_pending() -> None:
    d = derive(obs(total=10))
    assert d.phase == "Pending"
    assert conds(d)["Progressing"] == ("True", "Creating")
    assert conds(d)["SpecValid"] == ("True", "Valid")
    assert d.figures.requests == {"total": 10} and d.figures.progress == "0/10"


def test_refused_input_is_invalid_and_not_started() -> None:
    d = derive(
        obs(spec_errors=["spec.input.configMap: ConfigMap 'p' not found"], spec_error_reason="InputNotFound")
    )
    assert d.phase == "Invalid"
    assert conds(d) == {
        "SpecValid": ("False", "InputNotFound"),
        "Progressing": ("False", "InputNotFound"),
        "Complete": ("False", "InputNotFound"),
        "Failed": ("False", "InputNotFound"),
    }


def test_running_counts_finished_shards_only() -> None:
    pods = [
        pod("b-0", 0, "Succeeded", exit_code=0, message=summary(0, 2, 5, 4, invalid=1)),
        pod("b-1", 1, "Running"),
    ]
    d = derive(obs(job=job(completions=2, active=1, succeeded=1), pods=pods, total=10))
    assert d.phase == "Running"
    assert d.figures.requests == {"total": 10, "succeeded": 4, "failed": 1, "invalid": 1}
    assert d.figures.progress == "5/10"
    assert d.figures.pods == {"active": 1, "succeeded": 1, "failed": 0}
    assert d.figures.start_time == "2026-11-24T10:00:00Z"


def test_pods_waiting_for_gpus_are_reported() -> None:
    waiting = {
        "metadata": {"name": "b-0"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/4 nodes: Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    d = derive(obs(job=job(active=1), pods=[waiting]))
    assert d.phase == "Pending"
    status, reason = conds(d)["Progressing"]
    assert (status, reason) == ("True", "Unschedulable")
    message = next(c.message for c in d.conditions if c.type == "Progressing")
    assert "Insufficient nvidia.com/gpu" in message


def test_complete_job_is_succeeded_with_counts_from_every_shard() -> None:
    complete = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-24T11:00:00Z"}]
    pods = [
        pod("b-0-x", 0, "Succeeded", exit_code=0, message=summary(0, 2, 5, 5)),
        pod("b-1-x", 1, "Succeeded", exit_code=0, message=summary(1, 2, 5, 3, invalid=1)),
    ]
    d = derive(obs(job=job(completions=2, succeeded=2, conditions=complete), pods=pods))
    assert d.phase == "Succeeded"
    # The total comes from the shards when the operator could not read the input (PVC input).
    assert d.figures.requests == {"total": 10, "succeeded": 8, "failed": 2, "invalid": 1}
    assert d.figures.progress == "10/10"
    assert d.figures.completion_time == "2026-11-24T11:00:00Z"
    assert conds(d)["Complete"] == ("True", "Succeeded")
    assert conds(d)["Progressing"] == ("False", "Succeeded")
    message = next(c.message for c in d.conditions if c.type == "Complete")
    assert message == "8 of 10 requests answered, 2 with an error line. Results: pvc://r/o."


def test_kwok_style_completion_without_summary_still_succeeds() -> None:
    complete = [{"type": "Complete", "status": "True"}]
    p = pod("b-0", 0, "Succeeded", exit_code=0, message="")
    d = derive(obs(job=job(succeeded=1, conditions=complete), pods=[p], total=3))
    assert d.phase == "Succeeded" and d.figures.requests == {"total": 3} and d.figures.progress == "?/3"
    message = next(c.message for c in d.conditions if c.type == "Complete")
    assert message.startswith("the Job completed; its pods reported no request counts")


def test_failed_job_reports_vllms_error() -> None:
    failed = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2026-11-24T12:00:00Z",
        }
    ]
    pods = [
        pod(
            "b-0-a", 0, "Failed", exit_code=1, message="vLLM run-batch exited with code 1; old", finished="T1"
        ),
        pod(
            "b-0-b",
            0,
            "Failed",
            exit_code=1,
            message="vLLM run-batch exited with code 1;\nCUDA out of memory",
            finished="T2",
        ),
    ]
    d = derive(obs(job=job(failed=2, conditions=failed), pods=pods))
    assert d.phase == "Failed"
    assert conds(d)["Failed"] == ("True", "BackoffLimitExceeded")
    assert d.figures.message is not None
    assert d.figures.message.startswith(
        "Job has reached the specified backoff limit: pod b-0-b (shard 0) exit code 1"
    )
    assert "CUDA out of memory" in d.figures.message
    assert d.figures.completion_time == "2026-11-24T12:00:00Z"


def test_bad_input_found_by_the_pod_fails_at_once() -> None:
    failed = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "PodFailurePolicy",
            "message": "Container vllm ... exit code 3",
        }
    ]
    p = pod(
        "b-0",
        0,
        "Failed",
        exit_code=3,
        message="/batch/input/x.jsonl: the input is not JSONL: only 0 of 1 ...",
    )
    d = derive(obs(job=job(failed=1, conditions=failed), pods=[p]))
    assert d.phase == "Failed" and conds(d)["Failed"] == ("True", "PodFailurePolicy")
    assert d.figures.message is not None and "the input is not JSONL" in d.figures.message


def test_vanished_job_is_never_run_again() -> None:
    d = derive(obs(previous={"jobUid": "j1", "jobName": "b-batch", "phase": "Running"}))
    assert d.phase == "Failed"
    assert conds(d)["Failed"] == ("True", "JobDeleted")
    assert d.figures.message is not None and "re-create the TeleChatBatchJob" in d.figures.message


def test_spec_changed_after_start_is_said_not_applied() -> None:
    d = derive(obs(job=job(active=1), pods=[pod("b-0", 0, "Running")], spec_changed=True))
    message = next(c.message for c in d.conditions if c.type == "Progressing")
    assert "keeps the spec it started with" in message


def test_invalid_edit_while_running_keeps_running() -> None:
    d = derive(obs(job=job(active=1), pods=[pod("b-0", 0, "Running")], spec_errors=["spec.x: bad"]))
    assert d.phase == "Running"
    status, _ = conds(d)["SpecValid"]
    assert status == "False"


@pytest.mark.parametrize("finished", [("T1", "T2"), ("T2", "T1")])
def test_latest_summary_per_shard_wins(finished: tuple[str, str]) -> None:
    a = pod("b-0-a", 0, "Succeeded", exit_code=0, message=summary(0, 1, 3, 1), finished=finished[0])
    b = pod("b-0-b", 0, "Succeeded", exit_code=0, message=summary(0, 1, 3, 2), finished=finished[1])
    expected = 2 if finished[1] > finished[0] else 1
    assert shard_summaries([a, b])[0].succeeded == expected


def test_latest_failure_ignores_successes() -> None:
    ok = pod("b-0", 0, "Succeeded", exit_code=0, message=summary(0, 1, 3, 3))
    assert latest_failure([ok]) is None
