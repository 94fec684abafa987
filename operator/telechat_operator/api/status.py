"""Status of a TeleChatDeployment: Kubernetes-style conditions plus the figures `kubectl get` shows."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .spec import SpecModel

ConditionStatus = Literal["True", "False", "Unknown"]

# Condition types. Ready and Progressing follow Deployment's meaning; SpecValid says whether the spec (and
# the Secrets it references) could be turned into objects at all.
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
SPEC_VALID = "SpecValid"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, SPEC_VALID)

Phase = Literal["Pending", "Loading", "Ready", "Degraded", "Invalid", "ScaledToZero"]


class Condition(SpecModel):
    type: str = Field(max_length=64)
    status: ConditionStatus
    reason: str = Field(max_length=128, description="CamelCase reason, machine-readable.")
    message: str = Field("", max_length=8192, description="Human-readable detail.")
    last_transition_time: str = Field(description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(None, ge=0)


class TeleChatDeploymentStatus(SpecModel):
    observed_generation: int | None = Field(None, description="Generation of the spec this status is for.")
    phase: Phase | None = Field(None, description="One-word summary: Pending, Loading, Ready, Degraded, ...")
    conditions: list[Condition] = Field(default_factory=list)
    replicas: int | None = Field(None, description="Pods that exist (the scale subresource reads this).")
    ready_replicas: int | None = Field(None, description="Pods whose vLLM answers /health.")
    ready: str | None = Field(None, description="ready/desired, as shown by kubectl get.")
    selector: str | None = Field(None, description="Label selector of the pods (for the scale subresource).")
    model_id: str | None = Field(None, description="Resolved Hugging Face model id.")
    served_model_name: str | None = Field(None, description="Name to pass as `model` in OpenAI requests.")
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    gpus_per_replica: int | None = None
    gpus: int | None = Field(None, description="GPUs requested by all replicas.")
    endpoint: str | None = Field(None, description="OpenAI base URL inside the cluster.")
