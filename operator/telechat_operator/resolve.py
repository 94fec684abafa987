"""Turn a spec into the effective settings the renderer uses: catalog defaults and fixes applied.

Pure and deterministic. Everything that depends on which model is served (tensor parallel default,
rope_theta, the architecture override, the chat template, the startup budget) is decided here once, so
the renderer only lays these values out as Kubernetes objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from . import planner
from .api.spec import ModelEngineSpec
from .catalog import VLLM_ARCHITECTURE, ModelShape, ResolvedModel, resolve_model
from .config import OperatorConfig
from .rope import RopePlan, plan_rope


def telechat_chat_template() -> str:
    """TeleChat's chat template, shipped with the operator (TeleChat2-115B ships none)."""
    return resources.files("telechat_operator").joinpath("templates/telechat.jinja").read_text()


@dataclass(frozen=True)
class Effective:
    """Settings after defaults; what the renderer renders."""

    model: ResolvedModel
    served_model_name: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int | None
    hf_overrides: dict[str, Any]
    chat_template: str | None
    generation_config: dict[str, Any] | None
    startup_budget_seconds: int
    shared_memory_size: str
    image: str
    image_pull_policy: str
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> ModelShape | None:
        return self.model.shape

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


def served_length(spec: ModelEngineSpec, shape: ModelShape | None) -> int | None:
    """The context served: the spec's, else the catalog's native context times the rope factor."""
    if spec.engine.max_model_len is not None:
        return spec.engine.max_model_len
    if shape is None:
        return None
    rope = spec.engine.rope_scaling
    native = rope.original_max_position_embeddings if rope and rope.original_max_position_embeddings else None
    return int((native or shape.native_context) * (rope.factor if rope else 1.0))


def _hf_overrides(spec: ModelEngineSpec, shape: ModelShape | None, plan: RopePlan) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if shape is not None and shape.needs_architecture_override():
        # vLLM registers only TeleChat2ForCausalLM; the 115B and older 7B checkpoints name other classes.
        overrides["architectures"] = [VLLM_ARCHITECTURE]
    overrides.update(plan.overrides)
    return overrides


def _generation_config(spec: ModelEngineSpec) -> dict[str, Any] | None:
    sampling = spec.sampling
    if sampling is None:
        return None
    # Keys as in a Hugging Face generation_config.json, which vLLM's --generation-config reads.
    values = {
        "temperature": sampling.temperature,
        "repetition_penalty": sampling.repetition_penalty,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_new_tokens": sampling.max_tokens,
    }
    return {k: v for k, v in values.items() if v is not None}


def _startup_budget(spec: ModelEngineSpec, shape: ModelShape | None, config: OperatorConfig) -> int:
    override = spec.startup_budget_override()
    if override is not None:
        return override
    budgets = config.probe_budgets
    if shape is None:
        return budgets.unknown_model_seconds
    loading = shape.weights_gb(spec.engine.dtype) * budgets.load_seconds_per_gb
    if spec.model.pvc is not None:
        seconds = budgets.load_base_seconds + loading
    else:
        # A download is followed by the same load into GPU memory; leaving it out starved the 115B.
        stored_gb = shape.weights_gb("auto")
        seconds = budgets.download_base_seconds + stored_gb * budgets.download_seconds_per_gb + loading
    # Round up to whole minutes: readable in the pod spec and stable across small config changes.
    return int(math.ceil(seconds / 60.0) * 60)


def _shared_memory(spec: ModelEngineSpec, gpus: int) -> str:
    if spec.resources.shared_memory_size is not None:
        return str(spec.resources.shared_memory_size)
    # NCCL keeps per-peer buffers in /dev/shm; the container runtime's 64Mi default breaks tensor parallel.
    return f"{1 + 2 * gpus}Gi"


def _planned_tensor_parallel(
    spec: ModelEngineSpec, shape: ModelShape, max_model_len: int | None
) -> tuple[int, str] | None:
    """With a known GPU product: the smallest valid size whose KV cache holds two full-length requests
    (one would serve a single long conversation at a time; more is the user's call)."""
    product = spec.resources.gpu_product
    memory = planner.gpu_total_bytes(product) if product else None
    if memory is None:
        return None
    found = planner.smallest_tensor_parallel_size(
        shape,
        memory,
        min_requests=2.0,
        pipeline_parallel_size=spec.engine.pipeline_parallel_size,
        dtype=spec.engine.dtype,
        gpu_memory_utilization=spec.engine.gpu_memory_utilization or planner.VLLM_GPU_MEMORY_UTILIZATION,
        max_model_len=max_model_len,
        limits=planner.limits_from_args(list(spec.engine.extra_args)),
    )
    if found is None:
        return None
    tp, plan = found
    return tp, f"tensorParallelSize {tp} planned for {product}: {plan.describe()}"


def effective(spec: ModelEngineSpec, config: OperatorConfig) -> Effective:
    model = resolve_model(spec.model.name)
    shape = model.shape
    notes: list[str] = []
    if model.rewritten_from:
        notes.append(f"model {model.rewritten_from!r} resolved to {model.model_id!r}")
    max_model_len = served_length(spec, shape)
    tp = spec.engine.tensor_parallel_size
    if tp is None:
        tp = shape.default_tensor_parallel_size if shape else 1
        planned = _planned_tensor_parallel(spec, shape, max_model_len) if shape else None
        if planned is not None:
            tp = planned[0]
            notes.append(planned[1])
    pp = spec.engine.pipeline_parallel_size

    rope = plan_rope(spec.engine.rope_scaling, shape, max_model_len)
    notes.extend(rope.notes)

    chat_template = spec.engine.chat_template
    if chat_template is None and shape is not None and not shape.ships_chat_template:
        chat_template = telechat_chat_template()
        notes.append(f"{model.model_id} ships no chat template; serving TeleChat's")

    return Effective(
        model=model,
        served_model_name=spec.model.served_model_name or model.model_id,
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        max_model_len=max_model_len,
        hf_overrides=_hf_overrides(spec, shape, rope),
        chat_template=chat_template,
        generation_config=_generation_config(spec),
        startup_budget_seconds=_startup_budget(spec, shape, config),
        shared_memory_size=_shared_memory(spec, tp * pp),
        image=spec.engine.image or config.vllm_image,
        image_pull_policy=spec.engine.image_pull_policy or config.image_pull_policy,
        notes=notes,
    )
