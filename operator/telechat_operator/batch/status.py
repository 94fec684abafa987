"""Status of a TeleChatBatchJob: Job-style conditions, request counts, times and the output location.

The typed model (the CRD's status schema is generated from it), the status the operator reports built as
that model, and which condition transitions become Events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from ..api.spec import SpecModel
from ..api.status import PROGRESSING, SPEC_VALID, Condition
from ..controller.status import Derived, carried, conditions_for

# Condition types. Complete and Failed mean what they mean on a batch/v1 Job; Progressing is True while
# the batch is waiting or running; SpecValid as on TeleChatDeployment (the spec, its Secrets, input and
# output could be checked and turned into a Job).
COMPLETE = "Complete"
FAILED = "Failed"
CONDITION_TYPES = (SPEC_VALID, PROGRESSING, COMPLETE, FAILED)

BatchPhase = Literal["Pending", "Invalid", "Running", "Succeeded", "Failed"]
TERMINAL_PHASES = ("Succeeded", "Failed")


class RequestCounts(SpecModel):
    """Requests of the input file; succeeded and failed are known once the pods that ran them finish."""

    total: int | None = Field(None, description="Requests (non-blank lines) in the input file.")
    succeeded: int | None = Field(None, description="Requests answered by vLLM (status 200).")
    failed: int | None = Field(
        None, description="Requests with an error line in the output (including malformed input lines)."
    )
    invalid: int | None = Field(
        None, description="Input lines that were not a valid request (not sent to vLLM; counted in failed)."
    )


class PodCounts(SpecModel):
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None


class TeleChatBatchJobStatus(SpecModel):
    observed_generation: int | None = Field(None, description="Generation of the spec this status is for.")
    phase: BatchPhase | None = Field(None, description="Pending, Invalid, Running, Succeeded or Failed.")
    conditions: list[Condition] = Field(default_factory=list)
    requests: RequestCounts | None = None
    progress: str | None = Field(None, description="done/total requests, as shown by kubectl get.")
    pods: PodCounts | None = Field(None, description="The Job's pods (one per shard, plus retries).")
    job_name: str | None = Field(None, description="The batch/v1 Job running the batch.")
    job_uid: str | None = Field(
        None, description="UID of that Job; once set, a vanished Job is never created again."
    )
    start_time: str | None = Field(None, description="When the Job started (RFC 3339).")
    completion_time: str | None = Field(None, description="When the Job finished (RFC 3339).")
    output: str | None = Field(None, description="Where the results are: pvc://<claim>/<path>.")
    message: str | None = Field(
        None, max_length=8192, description="Why the batch failed: vLLM's own error when it has one."
    )
    model_id: str | None = Field(None, description="Resolved Hugging Face model id.")
    served_model_name: str | None = Field(
        None, description="Value of `model` in the requests (or leave it out)."
    )
    gpus_per_pod: int | None = None
    gpus: int | None = Field(None, description="GPUs requested by all pods at once.")


@dataclass
class BatchFigures:
    """What a batch reports besides its conditions: counts, times and why it failed."""

    requests: dict[str, int] = field(default_factory=dict)
    progress: str | None = None
    pods: dict[str, int] = field(default_factory=dict)
    start_time: str | None = None
    completion_time: str | None = None
    message: str | None = None


# Fields that describe the spec; kept from the previous status while the spec is invalid.
_SPEC_FIELDS = ("model_id", "served_model_name", "gpus_per_pod", "gpus", "output")


def desired_status(
    previous: dict[str, Any],
    derived: Derived[BatchFigures],
    generation: int | None,
    job: dict[str, Any] | None,
    spec_fields: dict[str, Any] | None,
) -> TeleChatBatchJobStatus:
    """``spec_fields`` (by Python name) describe a valid spec; None keeps the previous ones."""
    figures = derived.figures
    job_meta = (job or {}).get("metadata", {})
    requests, progress = figures.requests or None, figures.progress
    if not figures.requests and previous.get("requests") and job is not None:
        # The pods that reported the counts are gone (deleted by hand): keep what was learned.
        requests, progress = previous.get("requests"), previous.get("progress")
    if spec_fields is None:
        spec_fields = carried(previous, TeleChatBatchJobStatus, _SPEC_FIELDS)
    return TeleChatBatchJobStatus(
        observed_generation=generation,
        phase=derived.phase,
        conditions=conditions_for(previous, derived.conditions, generation),
        requests=requests,
        progress=progress,
        pods=figures.pods or None,
        job_name=job_meta.get("name") or previous.get("jobName"),
        job_uid=job_meta.get("uid") or previous.get("jobUid"),
        start_time=figures.start_time or previous.get("startTime"),
        completion_time=figures.completion_time,
        message=figures.message,
        **spec_fields,
    )


def event_type(cond: dict[str, Any], before: tuple[str, str] | None) -> str | None:
    """Transitions worth an Event: a refused spec or input, recovery from it, and how the batch ended."""
    kind, status = cond["type"], cond["status"]
    if (kind, status) in ((SPEC_VALID, "False"), (FAILED, "True")):
        return "Warning"
    if (kind, status) == (COMPLETE, "True"):
        return "Normal"
    if (kind, status) == (SPEC_VALID, "True") and before is not None and before[0] == "False":
        return "Normal"
    return None
