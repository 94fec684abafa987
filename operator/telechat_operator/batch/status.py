"""Status of a TeleChatBatchJob: Job-style conditions, request counts, times and the output location."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..api.spec import SpecModel
from ..api.status import PROGRESSING, SPEC_VALID, Condition

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
