"""Pure status derivation for a TeleChatBatchJob from its Job, the Job's pods and the previous status.

Counts come from the pods' termination messages: each shard's runner ends with a one-line JSON summary
(``runner.ShardSummary``), which the kubelet copies into the pod status. A failed shard's termination
message is vLLM's own last log lines, reported as the batch's failure message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.status import PROGRESSING, SPEC_VALID
from ..controller.conditions import Cond
from ..controller.pods import pod_problems
from ..controller.status import Derived
from ..render.pod import CONTAINER_NAME
from .runner import ShardSummary, parse_summary
from .status import COMPLETE, FAILED, TERMINAL_PHASES, BatchFigures

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


@dataclass
class BatchObservation:
    generation: int | None
    previous: dict[str, Any]
    job: dict[str, Any] | None
    pods: list[dict[str, Any]]
    output: str | None = None
    # Requests in the input when known: from the pre-flight read of a ConfigMap, or an earlier status.
    total: int | None = None
    spec_errors: list[str] = field(default_factory=list)
    spec_error_reason: str = "InvalidSpec"
    notes: list[str] = field(default_factory=list)
    apply_error: str | None = None
    # The Job was rendered from another spec than the current one (a Job's template cannot change).
    spec_changed: bool = False


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER_NAME:
            return dict((cs.get("state") or {}).get("terminated") or {})
    return {}


def shard_summaries(pods: list[dict[str, Any]]) -> dict[int, ShardSummary]:
    """The summary of each finished shard (the latest succeeded pod of each completion index)."""
    found: dict[int, tuple[str, ShardSummary]] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        term = _terminated(pod)
        summary = parse_summary(term.get("message"))
        if summary is None:
            continue
        finished = str(term.get("finishedAt") or "")
        if summary.shard not in found or finished >= found[summary.shard][0]:
            found[summary.shard] = (finished, summary)
    return {index: summary for index, (_, summary) in found.items()}


def latest_failure(pods: list[dict[str, Any]]) -> str | None:
    """The termination message of the most recent failed pod: the runner's error or vLLM's last log lines."""
    latest: tuple[str, str] | None = None
    for pod in pods:
        term = _terminated(pod)
        if not term or term.get("exitCode", 0) == 0:
            continue
        meta = pod.get("metadata") or {}
        shard = (meta.get("annotations") or {}).get(COMPLETION_INDEX, "?")
        text = (term.get("message") or term.get("reason") or "").strip()
        message = f"pod {meta.get('name', '?')} (shard {shard}) exit code {term.get('exitCode')}: {text}"
        finished = str(term.get("finishedAt") or "")
        if latest is None or finished >= latest[0]:
            latest = (finished, message)
    return latest[1] if latest else None


def count_requests(
    summaries: dict[int, ShardSummary], total: int | None
) -> tuple[dict[str, int], str | None]:
    if total is None and summaries:
        total = next(iter(summaries.values())).input_requests
    requests: dict[str, int] = {}
    if total is not None:
        requests["total"] = total
    if summaries:
        requests["succeeded"] = sum(s.succeeded for s in summaries.values())
        requests["failed"] = sum(s.failed for s in summaries.values())
        requests["invalid"] = sum(s.invalid for s in summaries.values())
    done = requests.get("succeeded", 0) + requests.get("failed", 0)
    progress = f"{done}/{total}" if total is not None else None
    return requests, progress


def _job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _spec_valid(obs: BatchObservation) -> Cond:
    if obs.spec_errors:
        message = "; ".join(obs.spec_errors)
        if obs.job is not None:
            message += ". The Job already running keeps the spec it started with."
        return Cond(SPEC_VALID, "False", obs.spec_error_reason, message)
    return Cond(SPEC_VALID, "True", "Valid", "; ".join(obs.notes))


def _not_started(obs: BatchObservation, valid: Cond, figures: BatchFigures) -> Derived[BatchFigures]:
    """No Job: never created yet, or gone before the operator saw it finish."""
    prev = obs.previous
    if prev.get("jobUid"):
        # Deleted by hand, or by its TTL before the operator saw it finish: never run the batch twice.
        message = (
            f"the Job {prev.get('jobName')} was deleted before the operator saw it finish; re-create the "
            "TeleChatBatchJob to run the batch again"
        )
        figures.message = message
        return Derived(
            "Failed",
            [
                valid,
                Cond(PROGRESSING, "False", "JobDeleted", message),
                Cond(COMPLETE, "False", "JobDeleted", message),
                Cond(FAILED, "True", "JobDeleted", message),
            ],
            figures,
        )
    if obs.spec_errors:
        reason = obs.spec_error_reason
        return Derived(
            "Invalid",
            [
                valid,
                Cond(PROGRESSING, "False", reason, "waiting for a valid spec, input and output"),
                Cond(COMPLETE, "False", reason, "not started"),
                Cond(FAILED, "False", reason, "not started"),
            ],
            figures,
        )
    reason, message = (
        ("ApplyFailed", obs.apply_error) if obs.apply_error else ("Creating", "creating the Job")
    )
    return Derived(
        "Pending",
        [
            valid,
            Cond(PROGRESSING, "True", reason, message),
            Cond(COMPLETE, "False", reason, "not started"),
            Cond(FAILED, "False", reason, "not started"),
        ],
        figures,
    )


def _succeeded(
    obs: BatchObservation, job: dict[str, Any], complete: dict[str, Any], valid: Cond, figures: BatchFigures
) -> Derived[BatchFigures]:
    requests = figures.requests
    status = job.get("status") or {}
    shards = int((job.get("spec") or {}).get("completions") or 1)
    where = f" Results: {obs.output}." if obs.output else ""
    if "succeeded" in requests:
        done = f"{requests['succeeded']} of {requests.get('total', '?')} requests answered"
        if requests.get("failed"):
            done += f", {requests['failed']} with an error line"
    else:
        # Finished pods said nothing the operator could read (deleted early, or not our runner).
        done = "the Job completed; its pods reported no request counts"
        figures.progress = f"?/{requests['total']}" if "total" in requests else None
    figures.completion_time = status.get("completionTime") or complete.get("lastTransitionTime")
    return Derived(
        "Succeeded",
        [
            valid,
            Cond(PROGRESSING, "False", "Succeeded", f"all {shards} shard(s) finished"),
            Cond(COMPLETE, "True", "Succeeded", f"{done}.{where}"),
            Cond(FAILED, "False", "Succeeded", ""),
        ],
        figures,
    )


def _failed(
    obs: BatchObservation, failed: dict[str, Any], valid: Cond, figures: BatchFigures
) -> Derived[BatchFigures]:
    reason = str(failed.get("reason") or "JobFailed")
    detail = latest_failure(obs.pods) or str(failed.get("message") or reason)
    message = f"{failed.get('message') or reason}: {detail}" if detail != failed.get("message") else detail
    figures.completion_time = failed.get("lastTransitionTime")
    figures.message = message[:8000]
    return Derived(
        "Failed",
        [
            valid,
            Cond(PROGRESSING, "False", reason, "the Job failed"),
            Cond(COMPLETE, "False", reason, "the Job failed"),
            Cond(FAILED, "True", reason, figures.message),
        ],
        figures,
    )


def _running(
    obs: BatchObservation, job: dict[str, Any], valid: Cond, figures: BatchFigures
) -> Derived[BatchFigures]:
    pods = figures.pods
    shards = int((job.get("spec") or {}).get("completions") or 1)
    running = any((p.get("status") or {}).get("phase") == "Running" for p in obs.pods)
    reason = "Running" if running else "PodsPending"
    message = f"{pods['active']} of {shards} shard pod(s) active, {pods['succeeded']} finished"
    problems = pod_problems(obs.pods)
    if problems:
        reason = problems[0].reason
        message += ": " + "; ".join(p.message for p in problems[:5])
        if pods["failed"]:
            message += " (failed pods are retried up to spec.backoffLimit)"
    if obs.spec_changed:
        message += (
            ". The spec changed after the Job started; the Job keeps the spec it started with (delete and "
            "re-create the TeleChatBatchJob to run the new one)"
        )
    return Derived(
        "Running" if running else "Pending",
        [
            valid,
            Cond(PROGRESSING, "True", reason, message),
            Cond(COMPLETE, "False", reason, "running" if running else "waiting for pods"),
            Cond(FAILED, "False", reason, ""),
        ],
        figures,
    )


def derive(obs: BatchObservation) -> Derived[BatchFigures]:
    job = obs.job
    requests, progress = count_requests(shard_summaries(obs.pods), obs.total)
    figures = BatchFigures(requests=requests, progress=progress)
    valid = _spec_valid(obs)
    if job is None:
        return _not_started(obs, valid, figures)
    status = job.get("status") or {}
    figures.pods = {k: int(status.get(k) or 0) for k in ("active", "succeeded", "failed")}
    figures.start_time = status.get("startTime")
    complete = _job_condition(job, "Complete")
    if complete is not None:
        return _succeeded(obs, job, complete, valid, figures)
    failed = _job_condition(job, "Failed")
    if failed is not None:
        return _failed(obs, failed, valid, figures)
    return _running(obs, job, valid, figures)


def is_terminal(status: dict[str, Any]) -> bool:
    return status.get("phase") in TERMINAL_PHASES
