"""Validation of a vLLM workload spec (any kind that runs vLLM) beyond what the CRD schema can express.

``check`` is used by every caller with the same code: by the validating admission webhook (refuse at
``kubectl apply``), by the reconcilers (a safety net when the webhook is not installed: status condition
and Event), and by ``telechat-operator render``. Each kind passes its spec type and its own extra rules.
Pure: no API calls; Secrets are checked by the reconcilers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from . import planner
from .api.spec import OWNED_FLAGS, OWNED_SHORT_FLAGS, ModelEngineSpec
from .catalog import gpu_memory_gb
from .config import OperatorConfig
from .resolve import Effective, effective
from .rope import VERIFIED_VLLM_RANGE, rotary_code_verified, rotary_positions, vllm_length_limit

# Environment variables the operator sets; overriding them would bypass Secrets or the spec.
OWNED_ENV = frozenset(
    {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY", "HF_HOME", "HF_HUB_OFFLINE", "HOME"}
)
_FLAG = re.compile(r"^(--[A-Za-z0-9_-]+|-[A-Za-z]+)(=.*)?$")
# Fraction of GPU memory vLLM takes by default.
VLLM_DEFAULT_GPU_UTILIZATION = planner.VLLM_GPU_MEMORY_UTILIZATION

SpecT = TypeVar("SpecT", bound=ModelEngineSpec)


class SpecError(ValueError):
    """A spec that cannot be served; ``errors`` are complete sentences naming the field."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _pydantic_messages(exc: ValidationError) -> list[str]:
    messages = []
    for err in exc.errors():
        where = ".".join(str(p) for p in ("spec", *err["loc"]))
        messages.append(f"{where}: {err['msg']}")
    return messages


def parse_as(kind: type[SpecT], raw: dict[str, Any] | None) -> SpecT:
    """Read a stored spec of any vLLM workload kind; raises SpecError with one message per bad field."""
    try:
        return kind.model_validate(raw or {})
    except ValidationError as exc:
        raise SpecError(_pydantic_messages(exc)) from None


def flag_name(arg: str) -> str | None:
    match = _FLAG.match(arg)
    if not match:
        return None
    return match.group(1).lstrip("-").replace("_", "-")


def _check_extra_args(spec: ModelEngineSpec, verdict: Verdict) -> None:
    owned = set(OWNED_FLAGS) | set(OWNED_SHORT_FLAGS)
    for arg in spec.engine.extra_args:
        name = flag_name(arg)
        if name in owned:
            verdict.errors.append(
                f"spec.engine.extraArgs: {arg.split('=')[0]} is rendered by the operator from the spec; "
                "set the corresponding spec field instead"
            )


def _check_env(spec: ModelEngineSpec, verdict: Verdict) -> None:
    for var in spec.engine.env:
        if var.name in OWNED_ENV:
            verdict.errors.append(
                f"spec.engine.env: {var.name} is set by the operator (tokens come from "
                "spec.model.hfTokenSecretRef and spec.apiKeySecretRef)"
            )
        if var.value is not None and var.value_from is not None:
            verdict.errors.append(f"spec.engine.env: {var.name} sets both value and valueFrom")


def _check_model(spec: ModelEngineSpec, eff: Effective, verdict: Verdict) -> None:
    shape = eff.shape
    tp, pp = eff.tensor_parallel_size, eff.pipeline_parallel_size
    if shape is None:
        return
    name = shape.model_id
    if not spec.model.trust_remote_code:
        verdict.errors.append(
            f"spec.model.trustRemoteCode: {name} needs its own config and tokenizer code; it must be true"
        )
    if shape.heads % tp or shape.kv_heads % tp:
        sizes = ", ".join(str(n) for n in shape.valid_tensor_parallel_sizes())
        verdict.errors.append(
            f"spec.engine.tensorParallelSize: {tp} does not divide {name}'s {shape.heads} attention heads "
            f"and {shape.kv_heads} KV heads; valid sizes: {sizes}"
        )
    if pp > shape.layers:
        verdict.errors.append(
            f"spec.engine.pipelineParallelSize: {pp} exceeds {name}'s {shape.layers} layers"
        )
    rope = spec.engine.rope_scaling
    factor = rope.factor if rope is not None else 1.0
    if rope is not None and rope.original_max_position_embeddings is not None:
        native = rope.original_max_position_embeddings
    else:
        native = shape.native_context
    limit = int(native * factor)
    if eff.max_model_len is not None and eff.max_model_len > limit:
        if rope is None:
            hint = f"add engine.ropeScaling (dynamic, factor >= {eff.max_model_len / native:.2f})"
            detail = f"its native context {native}"
        else:
            hint = "raise engine.ropeScaling.factor or lower maxModelLen"
            detail = f"its native context {native} x rope factor {factor:g} = {limit}"
        verdict.errors.append(
            f"spec.engine.maxModelLen: {eff.max_model_len} exceeds what {name} supports, {detail}; {hint}"
        )
    _check_fit(spec, eff, verdict)


def _check_context(spec: ModelEngineSpec, eff: Effective, verdict: Verdict) -> None:
    """Can the rendered configuration serve maxModelLen? vLLM finds out only at start, or at the first
    long prompt, which kills the engine."""
    served = eff.max_model_len
    if served is None:
        return
    covered = rotary_positions(eff.hf_overrides)
    if covered < served:
        verdict.errors.append(
            f"spec.engine.maxModelLen: {served} tokens but the rendered rope table covers {covered} "
            "positions; a longer prompt would crash vLLM"
        )
    if eff.shape is not None:
        accepted = vllm_length_limit(eff.shape.native_context, eff.hf_overrides)
        if accepted < served:
            verdict.errors.append(
                f"spec.engine.maxModelLen: {served} exceeds the {accepted} tokens vLLM derives from "
                f"{eff.shape.model_id}'s config with the rendered overrides; vLLM would refuse to start"
            )
    uses_rope_rules = "max_position_embeddings" in eff.hf_overrides or "rope_scaling" in eff.hf_overrides
    if uses_rope_rules and not rotary_code_verified(eff.image):
        low, high = VERIFIED_VLLM_RANGE
        verdict.warnings.append(
            f"spec.engine.image: {eff.image} is not a vLLM version whose rotary code the operator knows "
            f"({low[0]}.{low[1]} to {high[0]}.{high[1]}); the rendered max_position_embeddings and rope "
            "parameters may not give TeleChat's long-context behaviour"
        )


def _check_fit(spec: ModelEngineSpec, eff: Effective, verdict: Verdict) -> None:
    """GPU planning: do the weights fit in the GPUs one replica gets?"""
    shape = eff.shape
    product = spec.resources.gpu_product
    if shape is None or product is None:
        return
    memory = gpu_memory_gb(product)
    if memory is None:
        verdict.warnings.append(
            f"spec.resources.gpuProduct: {product} is unknown; weight and KV-cache fit not checked"
        )
        return
    gpus = eff.gpus_per_replica
    utilization = spec.engine.gpu_memory_utilization or VLLM_DEFAULT_GPU_UTILIZATION
    usable = memory * utilization * gpus
    weights = shape.weights_gb(spec.engine.dtype)
    dtype = spec.engine.dtype if spec.engine.dtype != "auto" else f"auto ({shape.stored_dtype})"
    if weights >= usable:
        need = next(
            (
                n
                for n in shape.valid_tensor_parallel_sizes()
                if weights < memory * utilization * n * eff.pipeline_parallel_size
            ),
            None,
        )
        hint = f"tensorParallelSize {need} would fit" if need else "use a larger GPU or pipeline parallelism"
        verdict.errors.append(
            f"spec.resources: {shape.model_id} in {dtype} needs ~{weights:.0f} GB of weights but "
            f"{gpus} x {product} ({memory:g} GB, {utilization:g} usable) hold {usable:.0f} GB; {hint}"
        )
    elif kv_error := planner.kv_fit_error(
        shape,
        product,
        tensor_parallel_size=eff.tensor_parallel_size,
        pipeline_parallel_size=eff.pipeline_parallel_size,
        dtype=spec.engine.dtype,
        gpu_memory_utilization=utilization,
        max_model_len=eff.max_model_len,
        extra_args=list(spec.engine.extra_args),
    ):
        # The weights fit but vLLM's own start-up arithmetic (planner.py) leaves too little KV cache.
        verdict.errors.append(kv_error)
    elif weights > 0.85 * usable:
        verdict.warnings.append(
            f"spec.resources: {shape.model_id} weights (~{weights:.0f} GB) leave under 15% of "
            f"{usable:.0f} GB for the KV cache; expect a short maxModelLen or low concurrency"
        )


def _check_warnings(spec: ModelEngineSpec, eff: Effective, verdict: Verdict) -> None:
    if spec.model.pvc is not None and spec.model.revision:
        verdict.warnings.append("spec.model.revision is ignored when weights come from spec.model.pvc")
    cache = spec.model.cache
    if spec.model.pvc is None and cache is None:
        verdict.warnings.append(
            "spec.model.cache is not set: weights are downloaded again by every new pod (emptyDir)"
        )
    if cache is not None and cache.access_mode == "ReadWriteOnce" and spec.pod_count() > 1:
        verdict.warnings.append(
            "spec.model.cache.accessMode ReadWriteOnce with more than one vLLM pod: pods on other nodes "
            "cannot mount it"
        )
    if eff.shape is not None and spec.engine.dtype == "float32" and eff.shape.params_billion > 30:
        verdict.warnings.append(
            f"spec.engine.dtype float32 doubles {eff.shape.model_id}'s memory; float16 or bfloat16 is usual"
        )


Rule = Callable[[Any, Effective, Verdict], None]


def validate(spec: ModelEngineSpec, eff: Effective, rules: Sequence[Rule] = ()) -> Verdict:
    """Model-aware checks of a parsed spec and its effective settings, plus a kind's own ``rules``."""
    verdict = Verdict()
    _check_extra_args(spec, verdict)
    _check_env(spec, verdict)
    _check_model(spec, eff, verdict)
    _check_context(spec, eff, verdict)
    _check_warnings(spec, eff, verdict)
    for rule in rules:
        rule(spec, eff, verdict)
    return verdict


@dataclass(frozen=True)
class Checked(Generic[SpecT]):
    """A spec that passed every rule, its effective settings, and what to tell the user about it."""

    spec: SpecT
    effective: Effective
    # The rules' warnings (admission returns these to `kubectl apply`).
    warnings: list[str]

    @property
    def notes(self) -> list[str]:
        """Everything worth saying in status and `render`: what resolution changed, then the warnings."""
        return self.effective.notes + self.warnings


def check(
    kind: type[SpecT],
    raw_spec: dict[str, Any] | None,
    config: OperatorConfig | None = None,
    rules: Sequence[Rule] = (),
) -> Checked[SpecT]:
    """Parse, resolve once and validate a spec of ``kind``; raises SpecError when it cannot be served.

    The one entry point: the admission webhook, both reconcilers and `telechat-operator render` use it.
    """
    spec = parse_as(kind, raw_spec)
    eff = effective(spec, config or OperatorConfig())
    verdict = validate(spec, eff, rules)
    if not verdict.ok:
        raise SpecError(verdict.errors)
    return Checked(spec=spec, effective=eff, warnings=verdict.warnings)
