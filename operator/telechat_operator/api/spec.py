"""The TeleChatDeployment spec, typed once.

The CRD's OpenAPI schema is generated from these models (``telechat_operator.crdgen``), so field names,
types, ranges and descriptions live here only. Defaults are applied by pydantic when the operator reads a
resource and are never written back into the stored object: the CRD carries no ``default:`` keywords, so
GitOps tools see no drift between Git and the cluster.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

# A Kubernetes resource quantity: 8, "500m", "64Gi".
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"
Quantity = Annotated[int | Annotated[str, Field(pattern=QUANTITY_PATTERN)], Field()]

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"

Dtype = Literal["auto", "float16", "bfloat16", "float32"]

# vLLM flags the operator renders itself; setting them through extraArgs would silently fight the spec.
OWNED_FLAGS: tuple[str, ...] = (
    "model",
    "served-model-name",
    "revision",
    "trust-remote-code",
    "tensor-parallel-size",
    "pipeline-parallel-size",
    "dtype",
    "max-model-len",
    "gpu-memory-utilization",
    "hf-overrides",
    "rope-scaling",
    "rope-theta",
    "chat-template",
    "generation-config",
    "enable-auto-tool-choice",
    "tool-call-parser",
    "structured-outputs-config",
    "host",
    "port",
    "api-key",
    "config",
    "download-dir",
)
OWNED_SHORT_FLAGS: tuple[str, ...] = ("tp", "pp")
# Flag names hold only letters, digits and '-', so the regex needs no escaping inside a CEL string.
_OWNED_FLAG_REGEX = "^(--(" + "|".join(OWNED_FLAGS) + ")|-(" + "|".join(OWNED_SHORT_FLAGS) + "))(=.*)?$"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One x-kubernetes-validations entry (a CEL rule evaluated by the API server at admission)."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class SpecModel(BaseModel):
    """Base of every spec type: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(SpecModel):
    """A key in a Secret in the resource's namespace. The value is passed to vLLM by reference only."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Secret name.")
    key: str = Field("token", min_length=1, max_length=253, description="Key in the Secret. Default: token.")


class PVCModelSource(SpecModel):
    """Weights already present on a PersistentVolumeClaim; nothing is downloaded."""

    claim_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of an existing PVC."
    )
    path: str = Field(
        "",
        max_length=1024,
        pattern=r"^$|^([^/.]|\.[^.])([^.]|\.[^.])*\.?$",
        description="Directory of the checkpoint inside the volume, relative (no '..'). Default: the root.",
    )
    read_only: bool = Field(True, description="Mount the claim read-only. Default: true.")


class ModelCache(SpecModel):
    """Where downloaded weights are kept. Without it an emptyDir is used and every new pod downloads again."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.size) && has(self.existingClaim))",
                    "set either cache.size (the operator creates a PVC) or cache.existingClaim, not both",
                ),
            ]
        }
    )

    size: Quantity | None = Field(
        None, description="Size of a PVC the operator creates for the cache, e.g. 600Gi for TeleChat2-115B."
    )
    storage_class_name: str | None = Field(
        None, max_length=253, description="StorageClass of the created PVC. Default: the cluster default."
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] | None = Field(
        None,
        description=(
            "Access mode of the created PVC. Default: ReadWriteMany when replicas > 1, else ReadWriteOnce."
        ),
    )
    existing_claim: str | None = Field(
        None, max_length=253, pattern=DNS_SUBDOMAIN, description="Use this existing PVC as the cache."
    )

    @model_validator(mode="after")
    def _size_or_claim(self) -> ModelCache:
        # Mirrors the CEL rule above, for `render` and clusters where the CRD is older than the operator.
        if self.size is not None and self.existing_claim is not None:
            raise ValueError(
                "set either cache.size (the operator creates a PVC) or cache.existingClaim, not both"
            )
        return self


class ModelSpec(SpecModel):
    """Which TeleChat model to serve and where its weights come from."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.pvc) && has(self.cache))",
                    "model.pvc (weights on a volume) and model.cache (download cache) are exclusive",
                ),
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=MODEL_ID,
        description=(
            "Hugging Face model id, e.g. Tele-AI/TeleChat2-115B. Catalog short names (telechat2-7b) and the "
            "older TeleChat/... ids resolve to the Tele-AI id."
        ),
    )
    revision: str | None = Field(
        None, max_length=128, description="Branch, tag or commit of the model repository."
    )
    served_model_name: str | None = Field(
        None,
        max_length=128,
        description="Name clients pass as `model` in OpenAI requests. Default: the resolved model id.",
    )
    trust_remote_code: bool = Field(
        True,
        description="Load the model's own config and tokenizer code. TeleChat2 needs it. Default: true.",
    )
    pvc: PVCModelSource | None = Field(
        None, description="Load the weights from an existing PVC instead of downloading them."
    )
    cache: ModelCache | None = Field(None, description="Cache volume for downloaded weights.")
    hf_token_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret holding a Hugging Face token (gated or private models)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.pvc is not None and self.cache is not None:
            raise ValueError("model.pvc (weights on a volume) and model.cache (download cache) are exclusive")
        return self


class RopeScaling(SpecModel):
    """RoPE scaling, passed to vLLM as hf_overrides (the --rope-scaling flag was removed in vLLM 0.11.1)."""

    type: Literal["dynamic", "linear", "yarn"] = Field(
        description=(
            "Scaling method; TeleChat uses dynamic (rendered with TeleChat's NTK alpha for maxModelLen "
            "over the model's trained length)."
        )
    )
    factor: float = Field(gt=1.0, le=64.0, description="Context extension factor, e.g. 3.0.")
    rope_theta: float | None = Field(
        None, gt=0, description="RoPE base. Default: the model's own (10000, or 1e6 for the -32K variants)."
    )
    original_max_position_embeddings: int | None = Field(
        None, ge=1, description="Native context the factor applies to. Default: the model's seq_length."
    )


class EnvVar(SpecModel):
    """An environment variable for the vLLM container (same shape as a core/v1 EnvVar)."""

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME)
    value: str | None = Field(None, max_length=32768)
    value_from: dict[str, Any] | None = Field(
        None, description="A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...)."
    )


class EngineSpec(SpecModel):
    """vLLM engine settings."""

    image: str | None = Field(
        None,
        max_length=512,
        description="vLLM OpenAI server image. Default: the operator's configured, pinned image.",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None)
    dtype: Dtype = Field("auto", description="Weights and activations dtype. Default: auto.")
    tensor_parallel_size: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "GPUs each layer is split across; must divide the model's attention and KV heads. "
            "Default: the catalog's choice for the model (4 for TeleChat2-115B, else 1)."
        ),
    )
    pipeline_parallel_size: int = Field(
        1, ge=1, le=64, description="Pipeline stages; at most the model's layer count. Default: 1."
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        le=4194304,
        description=(
            "Context length served; at most the native context times the rope factor. Default: that "
            "product for catalog models. The operator renders the positions vLLM must cover "
            "(max_position_embeddings) and TeleChat's NTK alpha for this length."
        ),
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="Fraction of GPU memory vLLM may use. Default: vLLM's (0.92)."
    )
    rope_scaling: RopeScaling | None = Field(None, description="RoPE scaling for long context.")
    chat_template: str | None = Field(
        None,
        max_length=65536,
        description=(
            "Jinja chat template. Default: the model's own; for TeleChat2-115B, which ships none, "
            "the operator supplies TeleChat's."
        ),
    )
    extra_args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="More vLLM command-line arguments. Flags the operator renders itself are refused.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.all(a, !a.matches('{_OWNED_FLAG_REGEX}'))",
                    "extraArgs must not set flags the operator renders from the spec (model, parallel "
                    "sizes, dtype, max-model-len, hf-overrides, chat-template, host, port, ...)",
                )
            ]
        },
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64, description="Extra environment variables for vLLM."
    )


class SamplingSpec(SpecModel):
    """Default sampling served by vLLM when a request does not set it (rendered as generation_config.json)."""

    temperature: float | None = Field(None, ge=0.0, le=10.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="-1 or 0 disables top-k.")
    max_tokens: int | None = Field(
        None,
        ge=1,
        description=(
            "Default max_tokens of a completion. vLLM also caps requests that ask for more at this value "
            "(measured with vLLM 0.32), so set it to the longest answer you want to allow."
        ),
    )


class ToolCallingSpec(SpecModel):
    enabled: bool = Field(False, description="Let the model call tools (--enable-auto-tool-choice).")
    parser: str = Field(
        "hermes",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9_-]+$",
        description="vLLM tool-call parser. Tele-AI documents hermes. Default: hermes.",
    )


class StructuredOutputsSpec(SpecModel):
    backend: Literal["auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer"] = Field(
        "auto", description="Structured output (JSON schema, regex, grammar) backend. Default: auto."
    )


class FeaturesSpec(SpecModel):
    tool_calling: ToolCallingSpec | None = Field(None, description="OpenAI tool calling.")
    structured_outputs: StructuredOutputsSpec | None = Field(None, description="Structured/JSON output.")


class ResourcesSpec(SpecModel):
    """Compute for each replica. GPUs per replica are tensorParallelSize x pipelineParallelSize."""

    gpu_resource_name: str = Field(
        "nvidia.com/gpu",
        max_length=253,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$",
        description="Extended resource name of the GPU. Default: nvidia.com/gpu.",
    )
    gpu_product: str | None = Field(
        None,
        max_length=128,
        description=(
            "GPU product to run on, matched against the node label named by gpuProductLabel, e.g. "
            "NVIDIA-H100-80GB-HBM3. Known products also let the operator check that the weights fit."
        ),
    )
    gpu_product_label: str = Field(
        "nvidia.com/gpu.product", max_length=317, description="Node label holding the GPU product."
    )
    cpu: Quantity | None = Field(None, description="CPU request per replica.")
    memory: Quantity | None = Field(None, description="Memory request and limit per replica.")
    shared_memory_size: Quantity | None = Field(
        None,
        description="Size of /dev/shm (memory-backed) for NCCL. Default: 1Gi plus 2Gi per GPU.",
    )


class ServiceSpec(SpecModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP")
    port: int = Field(8000, ge=1, le=65535, description="Service port. Default: 8000.")
    annotations: dict[str, str] = Field(default_factory=dict)


class SchedulingSpec(SpecModel):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list, max_length=64)
    affinity: dict[str, Any] | None = Field(None, description="A core/v1 Affinity.")
    priority_class_name: str | None = Field(None, max_length=253)


class ProbesSpec(SpecModel):
    startup_budget_seconds: int | None = Field(
        None,
        ge=60,
        le=86400,
        description=(
            "How long a pod may take to download and load the model before it is restarted. "
            "Default: derived from the model's size and whether weights are downloaded."
        ),
    )


class ModelEngineSpec(SpecModel):
    """What every vLLM workload of the operator shares: the model, the engine, its defaults and compute.

    TeleChatDeployment (serving) and TeleChatBatchJob (offline batch) both extend it, so both get the same
    fields, the same validation (``validation.validate``) and the same settings (``resolve.effective``).
    """

    model: ModelSpec
    engine: EngineSpec = Field(default_factory=EngineSpec)
    sampling: SamplingSpec | None = Field(
        None,
        description="Default sampling parameters. Default: the model's own generation_config.json.",
    )
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)

    def pod_count(self) -> int:
        """vLLM pods that may run at once (replicas, or batch shards): decides shared-volume access modes."""
        return 1

    def startup_budget_override(self) -> int | None:
        """A user-set limit on model loading time; None lets ``resolve`` derive it from the model's size."""
        return None


class TeleChatDeploymentSpec(ModelEngineSpec):
    """A TeleChat2 model served by vLLM behind an OpenAI-compatible Service."""

    replicas: int = Field(1, ge=0, le=64, description="Number of vLLM replicas. Default: 1.")
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    api_key_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret holding an API key; /v1 then refuses requests without it."
    )
    probes: ProbesSpec = Field(default_factory=ProbesSpec)

    def pod_count(self) -> int:
        return self.replicas

    def startup_budget_override(self) -> int | None:
        return self.probes.startup_budget_seconds
