"""The TeleChatBatchJob spec: the shared model/engine part plus where requests come from and results go.

The model, engine, sampling, features, resources and scheduling fields are TeleChatDeployment's own types
(``ModelEngineSpec``), so both kinds validate and render them with the same code.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from ..api.spec import DNS_SUBDOMAIN, ModelEngineSpec, SpecModel, cel

# A relative file path inside a volume: no leading '/', no '..' anywhere, not ending in '/'.
RELATIVE_FILE = r"^([^/.]|\.[^./])([^.]|\.[^.])*[^./]$|^[^/.]$"
# ConfigMap keys: what the API server accepts for a data key.
CONFIGMAP_KEY = r"^[-._a-zA-Z0-9]+$"


class ConfigMapKey(SpecModel):
    """A key of a ConfigMap in the resource's namespace (data or binaryData), holding the JSONL file."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="ConfigMap name.")
    key: str = Field(min_length=1, max_length=253, pattern=CONFIGMAP_KEY, description="Key in the ConfigMap.")


class PVCFile(SpecModel):
    """A file on an existing PersistentVolumeClaim in the resource's namespace."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of an existing PVC."
    )
    path: str = Field(
        min_length=1,
        max_length=1024,
        pattern=RELATIVE_FILE,
        description="File path inside the volume, relative (no leading '/', no '..'), e.g. batches/in.jsonl.",
    )


class BatchInput(SpecModel):
    """The requests: an OpenAI batch file (JSONL, one request per line) in a ConfigMap or on a PVC."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.configMap) != has(self.pvc)", "set exactly one of input.configMap, input.pvc"),
            ]
        }
    )

    config_map: ConfigMapKey | None = Field(
        None,
        description=(
            "A ConfigMap key (up to ~1 MiB: small batches). The operator reads it before starting and "
            "refuses input that is not OpenAI batch JSONL, before any GPU is requested."
        ),
    )
    pvc: PVCFile | None = Field(
        None, description="A file on a PVC (large batches); checked by the Job's pod when it starts."
    )

    @model_validator(mode="after")
    def _one_source(self) -> BatchInput:
        # Mirrors the CEL rule above, for `render` and clusters where the CRD is older than the operator.
        if (self.config_map is None) == (self.pvc is None):
            raise ValueError("set exactly one of input.configMap, input.pvc")
        return self


class BatchOutput(SpecModel):
    """Where the results go: one JSONL file, one line per request in input order."""

    pvc: PVCFile = Field(
        description=(
            "File on a PVC the pods mount read-write; it is replaced when the batch finishes. With "
            "parallelism > 1 every pod mounts the claim (ReadWriteMany, or all pods on one node)."
        )
    )


class TeleChatBatchJobSpec(ModelEngineSpec):
    """An OpenAI batch file run through a TeleChat2 model by vLLM's batch mode, as a Kubernetes Job."""

    input: BatchInput
    output: BatchOutput
    parallelism: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "vLLM pods working at once, each with its own GPUs. Request k (k-th non-blank input line) goes "
            "to pod k mod parallelism; the results are merged back into input order. Default: 1."
        ),
    )
    backoff_limit: int = Field(
        1,
        ge=0,
        le=20,
        description=(
            "Pod failures (vLLM crash, lost node) retried before the batch fails. Bad input or an unwritable "
            "output fail at once; evictions and preemptions are not counted. Default: 1."
        ),
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Fail the batch when it runs longer than this (seconds). Default: no limit."
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        description=(
            "Delete the Job and its pods this many seconds after it finishes (the status keeps the outcome). "
            "Default: keep them."
        ),
    )

    def pod_count(self) -> int:
        return self.parallelism
