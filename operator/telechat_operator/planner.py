"""GPU memory plan of one vLLM replica: weights, overhead, and the KV cache left for requests. Pure.

vLLM sizes its KV cache at start-up (v1 ``gpu_worker.determine_available_memory``): it takes
``gpu_memory_utilization x total memory``, subtracts the weights, the peak of one profiling forward pass
(``max_num_batched_tokens`` tokens, then the sampler over ``max_num_seqs`` rows of logits), the memory that
is not PyTorch's (CUDA context, cuBLAS workspaces, NCCL buffers) and, since vLLM 0.21, an estimate of the
CUDA graphs; what is left becomes KV-cache blocks of 16 tokens. If that cannot hold one request of
``max_model_len`` tokens, vLLM refuses to start, after the image pull, the download and the load. This
module does the same arithmetic from the catalog's shapes so that admission can refuse such a spec with
the numbers, and so that a tensor parallel size can be chosen.

Weights are counted parameter by parameter from the shape (vocabulary padded to 64 per rank, as vLLM's
vocab-parallel layers do), not from a rounded parameter count. The overhead terms are estimates read from
vLLM's code, stated below; ``bench/gpu`` checks the whole plan against what vLLM reports on an H200.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .catalog import DTYPE_BYTES, ModelShape, gpu_memory_gb

GIB = 1024**3
# vLLM pads the vocabulary of its embedding and LM head to a multiple of this per rank.
VOCAB_PADDING = 64
# KV-cache block size (tokens) on CUDA.
BLOCK_TOKENS = 16
# vLLM's OpenAI-server scheduler defaults (engine/arg_utils.get_batch_defaults, 0.24 to 0.33): GPUs of
# 70 GiB or more (not A100) get 8192 batched tokens and 1024 sequences, smaller ones 2048 and 256.
LARGE_GPU_BYTES = 70 * GIB
LARGE_GPU_BATCH = (8192, 1024)
SMALL_GPU_BATCH = (2048, 256)
# Not PyTorch's: CUDA context and kernels' modules (~0.5 GiB on Hopper), cuBLAS/cuBLASLt workspaces.
NON_TORCH_BYTES = int(0.75 * GIB)
# Tensor parallel adds NCCL's buffers and the custom all-reduce's, per GPU.
NON_TORCH_TP_BYTES = int(0.5 * GIB)
# The sampler's profiling run over max_num_seqs rows of the full vocabulary: bf16 logits, their fp32
# copy, probabilities and the random draw (vLLM's Triton top-k/top-p works in place for 8+ rows).
SAMPLER_BYTES_PER_LOGIT = 14
# CUDA graphs (piecewise and full, up to 512 tokens): their private pool, per GPU.
CUDA_GRAPH_BYTES = int(0.5 * GIB)


# What CUDA reports as total memory, where it was read on the product (nvidia-smi on the lent H200). The
# catalog's figure is the vendor's nominal size, which is GiB rather than GB for these parts.
MEASURED_TOTAL_MIB = {"nvidia-h200": 143771}

# vLLM's default --gpu-memory-utilization.
VLLM_GPU_MEMORY_UTILIZATION = 0.92


def gpu_total_bytes(product: str) -> int | None:
    """Memory of one GPU of ``product`` in bytes; None for a product the catalog does not know."""
    measured = MEASURED_TOTAL_MIB.get(product.lower())
    if measured is not None:
        return measured * 1024**2
    nominal = gpu_memory_gb(product)
    return None if nominal is None else int(nominal * GIB)


@dataclass(frozen=True)
class EngineLimits:
    """The scheduler settings that size vLLM's profiling run (None: vLLM's default for the GPU)."""

    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    cuda_graphs: bool = True

    def resolved(self, gpu_memory_bytes: int) -> tuple[int, int]:
        tokens, seqs = LARGE_GPU_BATCH if gpu_memory_bytes >= LARGE_GPU_BYTES else SMALL_GPU_BATCH
        return (self.max_num_batched_tokens or tokens, self.max_num_seqs or seqs)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU (the fullest pipeline stage) and what they leave for the KV cache."""

    gpu_memory_bytes: int
    gpu_memory_utilization: float
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype: str
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    cuda_graph_bytes: int
    kv_bytes_per_token: int
    max_model_len: int

    @property
    def requested_bytes(self) -> int:
        return int(self.gpu_memory_bytes * self.gpu_memory_utilization)

    @property
    def overhead_bytes(self) -> int:
        return self.activation_bytes + self.non_torch_bytes + self.cuda_graph_bytes

    @property
    def kv_cache_bytes(self) -> int:
        """What is left for the KV cache; negative when the weights and overhead alone do not fit."""
        return self.requested_bytes - self.weights_bytes - self.overhead_bytes

    @property
    def kv_tokens(self) -> int:
        if self.kv_cache_bytes <= 0:
            return 0
        blocks = self.kv_cache_bytes // (self.kv_bytes_per_token * BLOCK_TOKENS)
        return int(blocks * BLOCK_TOKENS)

    @property
    def full_length_requests(self) -> float:
        """How many requests of max_model_len tokens the KV cache holds at once."""
        return self.kv_tokens / self.max_model_len

    @property
    def fits_one_request(self) -> bool:
        return self.kv_tokens >= self.max_model_len

    def describe(self) -> str:
        return (
            f"{self.weights_bytes / GIB:.1f} GiB weights + {self.overhead_bytes / GIB:.1f} GiB activations, "
            f"graphs and CUDA context per GPU of {self.requested_bytes / GIB:.1f} GiB usable "
            f"({self.gpu_memory_utilization:g} x {self.gpu_memory_bytes / GIB:.1f} GiB) leave "
            f"{max(self.kv_cache_bytes, 0) / GIB:.1f} GiB of KV cache = {self.kv_tokens:,} tokens "
            f"({self.kv_bytes_per_token / 1024:.0f} KiB per token per GPU), "
            f"{self.full_length_requests:.2f} requests of {self.max_model_len} tokens"
        )


def loaded_dtype(dtype: str, shape: ModelShape) -> str:
    """The dtype vLLM computes in: ``auto`` is the stored dtype, except that vLLM downcasts float32
    checkpoints to bfloat16 (config/model.py, "Downcast for float32 models")."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if shape.stored_dtype == "float32" else shape.stored_dtype


def _per_rank(count: int, tp: int) -> int:
    return math.ceil(count / tp)


def kv_heads_per_rank(shape: ModelShape, tp: int) -> int:
    # With fewer KV heads than ranks vLLM replicates them: every rank keeps at least one.
    return max(1, shape.kv_heads // tp)


def layer_parameters(shape: ModelShape, tp: int) -> int:
    """Parameters of one decoder layer on one tensor-parallel rank."""
    hidden, head_dim = shape.hidden_size, shape.hidden_size // shape.heads
    query = _per_rank(shape.heads, tp) * head_dim * hidden
    key_value = 2 * kv_heads_per_rank(shape, tp) * head_dim * hidden
    dense = _per_rank(shape.heads, tp) * head_dim * hidden + hidden  # the bias is replicated
    mlp = 3 * _per_rank(shape.ffn_hidden_size, tp) * hidden + hidden  # gate, up, down (+ down's bias)
    norms = 2 * hidden
    return query + key_value + dense + mlp + norms


def vocab_parameters(shape: ModelShape, tp: int) -> int:
    """One of the embedding and the (untied) LM head on one rank."""
    padded = math.ceil(shape.vocab_size / (VOCAB_PADDING * tp)) * VOCAB_PADDING * tp
    return padded // tp * shape.hidden_size


def parameters_per_gpu(shape: ModelShape, tp: int = 1, pp: int = 1, layers: int | None = None) -> int:
    """Parameters on the fullest GPU: vLLM gives each stage ceil(layers / pp) layers; with pp = 1 the
    embedding, the LM head and the final norm share the GPU, otherwise the first or last stage has one."""
    depth = shape.layers if layers is None else layers
    per_stage = math.ceil(depth / pp)
    body = per_stage * layer_parameters(shape, tp)
    ends = vocab_parameters(shape, tp) * (2 if pp == 1 else 1) + shape.hidden_size
    return body + ends


def kv_bytes_per_token(
    shape: ModelShape, dtype: str, tp: int = 1, pp: int = 1, layers: int | None = None
) -> int:
    depth = math.ceil((shape.layers if layers is None else layers) / pp)
    head_dim = shape.hidden_size // shape.heads
    return 2 * depth * kv_heads_per_rank(shape, tp) * head_dim * DTYPE_BYTES[dtype]


def activation_bytes(shape: ModelShape, dtype: str, tp: int, batched_tokens: int, seqs: int) -> int:
    """Peak of vLLM's profiling run: the larger of the forward pass and the sampler."""
    width = DTYPE_BYTES[dtype]
    ffn = _per_rank(shape.ffn_hidden_size, tp)
    qkv = (_per_rank(shape.heads, tp) + 2 * kv_heads_per_rank(shape, tp)) * (shape.hidden_size // shape.heads)
    # The MLP is the widest point: gate/up output, its activation, plus the residual and normed hidden
    # states that stay alive; attention's q/k/v is narrower for every TeleChat2 shape but counted anyway.
    forward = batched_tokens * width * (3 * ffn + 4 * shape.hidden_size + qkv)
    sampler = seqs * shape.vocab_size * SAMPLER_BYTES_PER_LOGIT
    return max(forward, sampler)


def plan(
    shape: ModelShape,
    gpu_memory_bytes: int,
    *,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    dtype: str = "auto",
    gpu_memory_utilization: float = VLLM_GPU_MEMORY_UTILIZATION,
    max_model_len: int | None = None,
    limits: EngineLimits | None = None,
    layers: int | None = None,
) -> MemoryPlan:
    """The memory plan of one GPU of a replica. ``layers`` overrides the depth (reduced test layouts)."""
    tp, pp = tensor_parallel_size, pipeline_parallel_size
    computed = loaded_dtype(dtype, shape)
    tokens, seqs = (limits or EngineLimits()).resolved(gpu_memory_bytes)
    graphs = (limits or EngineLimits()).cuda_graphs
    return MemoryPlan(
        gpu_memory_bytes=gpu_memory_bytes,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        dtype=computed,
        weights_bytes=parameters_per_gpu(shape, tp, pp, layers) * DTYPE_BYTES[computed],
        activation_bytes=activation_bytes(shape, computed, tp, tokens, seqs),
        non_torch_bytes=NON_TORCH_BYTES + (NON_TORCH_TP_BYTES if tp * pp > 1 else 0),
        cuda_graph_bytes=CUDA_GRAPH_BYTES if graphs else 0,
        kv_bytes_per_token=kv_bytes_per_token(shape, computed, tp, pp, layers),
        max_model_len=max_model_len or shape.native_context,
    )


def smallest_tensor_parallel_size(
    shape: ModelShape,
    gpu_memory_bytes: int,
    min_requests: float = 4.0,
    **kwargs: object,
) -> tuple[int, MemoryPlan] | None:
    """The smallest valid tensor parallel size whose KV cache holds ``min_requests`` full-length requests
    (None when even the largest valid size does not)."""
    for tp in shape.valid_tensor_parallel_sizes(limit=8):
        candidate = plan(shape, gpu_memory_bytes, tensor_parallel_size=tp, **kwargs)  # type: ignore[arg-type]
        if candidate.full_length_requests >= min_requests:
            return tp, candidate
    return None


def limits_from_args(extra_args: list[str]) -> EngineLimits:
    """The scheduler limits a user set through engine.extraArgs (``--flag=value`` or ``--flag value``)."""
    values: dict[str, str] = {}
    for i, arg in enumerate(extra_args):
        name, _, value = arg.partition("=")
        if not value and i + 1 < len(extra_args) and not extra_args[i + 1].startswith("-"):
            value = extra_args[i + 1]
        values[name.lstrip("-").replace("_", "-")] = value
    batched, seqs = values.get("max-num-batched-tokens"), values.get("max-num-seqs")
    return EngineLimits(
        max_num_batched_tokens=int(batched) if batched and batched.isdigit() else None,
        max_num_seqs=int(seqs) if seqs and seqs.isdigit() else None,
        cuda_graphs="enforce-eager" not in values,
    )


def kv_fit_error(
    shape: ModelShape,
    product: str,
    *,
    tensor_parallel_size: int,
    pipeline_parallel_size: int,
    dtype: str,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    extra_args: list[str],
) -> str | None:
    """Admission's sentence when the KV cache cannot hold one request of max_model_len (vLLM refuses such
    a start); None when it can or the product is unknown (the caller warns about that)."""
    total = gpu_total_bytes(product)
    if total is None:
        return None
    common: dict[str, object] = {
        "pipeline_parallel_size": pipeline_parallel_size,
        "dtype": dtype,
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_model_len": max_model_len,
        "limits": limits_from_args(extra_args),
    }
    memory = plan(shape, total, tensor_parallel_size=tensor_parallel_size, **common)  # type: ignore[arg-type]
    if memory.fits_one_request:
        return None
    bigger = smallest_tensor_parallel_size(shape, total, min_requests=1.0, **common)
    hint = (
        f"tensorParallelSize {bigger[0]} would hold {bigger[1].full_length_requests:.1f}"
        if bigger and bigger[0] > tensor_parallel_size
        else "lower maxModelLen, raise gpuMemoryUtilization or use larger GPUs"
    )
    return (
        f"spec.resources: {shape.model_id} at tensorParallelSize {tensor_parallel_size} on {product}: "
        f"{memory.describe()}; vLLM refuses to start when the KV cache cannot hold one request of "
        f"maxModelLen ({memory.kv_tokens:,} < {memory.max_model_len:,} tokens); {hint}"
    )
