"""What the operator knows about TeleChat2 models and GPU products.

The model shapes drive model-aware validation (tensor parallel sizes, layer counts, context), the
architecture and chat-template fixes, and GPU planning. Figures are from Tele-AI's published configs;
models outside the catalog get structural checks only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Org names the TeleChat guide and older docs use for the same repositories.
_ALIAS_ORGS = {"tele-ai", "telechat", "telechat2", "tele_ai"}

# vLLM registers TeleChat2ForCausalLM only; older checkpoints name other classes.
VLLM_ARCHITECTURE = "TeleChat2ForCausalLM"

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


@dataclass(frozen=True)
class ModelShape:
    model_id: str
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    ffn_hidden_size: int
    vocab_size: int
    native_context: int
    # TeleChat's training_seqlen/base_seqlen: the length its dynamic NTK rope is anchored to.
    trained_context: int
    rope_theta: float
    params_billion: float
    # architectures[0] of the checkpoint's config.json; None when unconfirmed.
    architecture: str | None
    ships_chat_template: bool
    # dtype the weights are stored in (what `auto` loads and what a download costs).
    stored_dtype: str
    default_tensor_parallel_size: int = 1

    @property
    def short_name(self) -> str:
        return self.model_id.split("/", 1)[1].lower()

    def needs_architecture_override(self) -> bool:
        return self.architecture is not None and self.architecture != VLLM_ARCHITECTURE

    def weights_gb(self, dtype: str) -> float:
        """Weights in GB (1e9 bytes) when loaded in ``dtype`` (``auto`` = the stored dtype)."""
        resolved = self.stored_dtype if dtype == "auto" else dtype
        return self.params_billion * DTYPE_BYTES[resolved]

    def valid_tensor_parallel_sizes(self, limit: int = 64) -> list[int]:
        return [n for n in range(1, limit + 1) if self.heads % n == 0 and self.kv_heads % n == 0]


MODELS: tuple[ModelShape, ...] = (
    ModelShape(
        model_id="Tele-AI/TeleChat2-3B",
        hidden_size=3072,
        layers=24,
        heads=24,
        kv_heads=24,
        ffn_hidden_size=6144,
        vocab_size=131072,
        native_context=32768,
        trained_context=8192,
        rope_theta=10000.0,
        params_billion=3.0,
        architecture="TeleChat2ForCausalLM",
        ships_chat_template=True,
        stored_dtype="bfloat16",
    ),
    ModelShape(
        model_id="Tele-AI/TeleChat2-7B",
        hidden_size=4096,
        layers=30,
        heads=32,
        kv_heads=32,
        ffn_hidden_size=12288,
        vocab_size=131072,
        native_context=32768,
        trained_context=8192,
        rope_theta=10000.0,
        params_billion=7.5,
        architecture="TeleChatForCausalLM",
        ships_chat_template=True,
        stored_dtype="bfloat16",
    ),
    ModelShape(
        model_id="Tele-AI/TeleChat2-7B-32K",
        hidden_size=4096,
        layers=30,
        heads=32,
        kv_heads=32,
        ffn_hidden_size=12288,
        vocab_size=131072,
        native_context=32768,
        trained_context=32768,
        rope_theta=1_000_000.0,
        params_billion=7.5,
        architecture="TeleChat2ForCausalLM",
        ships_chat_template=True,
        stored_dtype="bfloat16",
    ),
    ModelShape(
        model_id="Tele-AI/TeleChat2-35B",
        hidden_size=6144,
        layers=64,
        heads=48,
        kv_heads=48,
        ffn_hidden_size=20480,
        vocab_size=131072,
        native_context=8192,
        trained_context=8192,
        rope_theta=10000.0,
        params_billion=35.5,
        architecture=None,
        ships_chat_template=True,
        stored_dtype="bfloat16",
        default_tensor_parallel_size=2,
    ),
    ModelShape(
        model_id="Tele-AI/TeleChat2-115B",
        hidden_size=8192,
        layers=96,
        heads=64,
        kv_heads=8,
        ffn_hidden_size=40960,
        vocab_size=131072,
        native_context=8192,
        trained_context=8192,
        rope_theta=10000.0,
        params_billion=113.5,
        architecture="TelechatForCausalLM",
        ships_chat_template=False,
        stored_dtype="float32",
        default_tensor_parallel_size=4,
    ),
)

_BY_KEY = {m.short_name: m for m in MODELS}


@dataclass(frozen=True)
class ResolvedModel:
    """The id to pass to vLLM and, for catalog models, the model's shape."""

    model_id: str
    shape: ModelShape | None
    # Set when the user's name was rewritten, to explain the change in an Event.
    rewritten_from: str | None = None


def resolve_model(name: str) -> ResolvedModel:
    """Map a user's model name to the real Hugging Face id.

    ``Tele-AI/TeleChat2-115B`` stays; ``telechat2-115b``, ``TeleChat/TeleChat2-115B`` and
    ``TeleChat2/TeleChat2-7B`` (the guide's ids, which do not exist) become ``Tele-AI/...``. Other ids pass
    through untouched, with no shape.
    """
    org, _, base = name.rpartition("/")
    if org and org.lower() not in _ALIAS_ORGS:
        return ResolvedModel(model_id=name, shape=None)
    shape = _BY_KEY.get(base.lower())
    if shape is None:
        return ResolvedModel(model_id=name, shape=None)
    rewritten = None if name == shape.model_id else name
    return ResolvedModel(model_id=shape.model_id, shape=shape, rewritten_from=rewritten)


@dataclass(frozen=True)
class GpuProduct:
    label: str
    memory_gb: float


# Values of the nvidia.com/gpu.product node label (GPU feature discovery) and their memory in GB.
GPU_PRODUCTS: tuple[GpuProduct, ...] = (
    GpuProduct("NVIDIA-H100-80GB-HBM3", 80),
    GpuProduct("NVIDIA-H100-SXM5-80GB", 80),
    GpuProduct("NVIDIA-H100-PCIe", 80),
    GpuProduct("NVIDIA-H800", 80),
    GpuProduct("NVIDIA-H200", 141),
    GpuProduct("NVIDIA-H20", 96),
    GpuProduct("NVIDIA-A800-SXM4-80GB", 80),
    GpuProduct("NVIDIA-A100-SXM4-80GB", 80),
    GpuProduct("NVIDIA-A100-SXM4-40GB", 40),
    GpuProduct("NVIDIA-A100-PCIE-40GB", 40),
    GpuProduct("NVIDIA-L40S", 48),
    GpuProduct("NVIDIA-L20", 48),
    GpuProduct("NVIDIA-A10", 24),
    GpuProduct("NVIDIA-L4", 24),
    GpuProduct("NVIDIA-GeForce-RTX-4090", 24),
    GpuProduct("Tesla-T4", 16),
)
_GPU_BY_LABEL = {g.label.lower(): g for g in GPU_PRODUCTS}
_GB_IN_LABEL = re.compile(r"(\d+)GB", re.IGNORECASE)


def gpu_memory_gb(product: str) -> float | None:
    """Memory of a GPU product, from the table or from an ``...-80GB`` style label; None if unknown."""
    known = _GPU_BY_LABEL.get(product.lower())
    if known:
        return known.memory_gb
    match = _GB_IN_LABEL.search(product)
    return float(match.group(1)) if match else None
