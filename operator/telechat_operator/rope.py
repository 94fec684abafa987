"""The positions and rotary parameters vLLM needs to serve a TeleChat2 context: pure rules.

Why this exists (read in vLLM 0.24.0, 0.32.0 and 0.33.0, whose code here is the same):

- vLLM's Llama code, which TeleChat2ForCausalLM subclasses, sizes the rotary cos/sin table from
  ``config.max_position_embeddings`` and falls back to 8192. TeleChat configs name their length
  ``seq_length`` and have no such key, so a prompt past 8192 tokens indexes outside the table: on a GPU
  the engine dies. The operator therefore always sends ``max_position_embeddings`` in hf-overrides.
- TeleChat's own modeling code applies dynamic NTK scaling at every length: for a sequence of ``L``
  tokens and trained length ``T`` it uses ``alpha = max(2 ** ceil(log2(L / T) + 1) - 1, 1)`` and the base
  ``rope_theta * alpha ** (d / (d - 2))``, and multiplies cos/sin by ``mscale = 1 + 0.1 ln(L / T)``.
- vLLM keeps one rotary table per engine. With ``rope_type: dynamic`` and an ``alpha`` it builds
  DynamicNTKAlphaRotaryEmbedding: ``rope_theta * alpha ** (d / (d - 2))`` over ``max_position_embeddings``
  positions, which is TeleChat's base exactly for the alpha given. (With only ``factor``, vLLM's
  DynamicNTKScalingRotaryEmbedding leaves the base unscaled unless ``max_trained_positions`` is set, so the
  guide's ``{dynamic, factor 3}`` alone does not scale at all.) The operator renders TeleChat's alpha for
  the longest context served: prompts in that length band get TeleChat's frequencies; shorter prompts get
  the same long-context frequencies (TeleChat's code would use a smaller alpha), and vLLM's dynamic rope
  has no attention scale, so TeleChat's ``mscale`` is not applied. Both are said in the render notes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .api.spec import RopeScaling
from .catalog import ModelShape

# vLLM versions whose rotary and max-length code the rules below were read against.
VERIFIED_VLLM_VERSIONS: tuple[str, ...] = ("0.24.0", "0.32.0", "0.33.0")
# The same code was found in all three; versions between them are assumed to share it.
VERIFIED_VLLM_RANGE = ((0, 24), (0, 33))
# What vLLM's Llama code assumes when the config has no max_position_embeddings.
VLLM_FALLBACK_POSITIONS = 8192

_VERSION_IN_IMAGE = re.compile(r":v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.][\w.]*)?$")


def telechat_ntk_alpha(length: int, trained: int) -> int:
    """TeleChat's NTK alpha for a sequence of ``length`` tokens (its ``get_ntk_alpha``)."""
    context_value = math.log2(max(length, trained) / trained) + 1
    return max(int(2 ** math.ceil(context_value)) - 1, 1)


def telechat_mscale(length: int, trained: int) -> float:
    """TeleChat's cos/sin multiplier for ``length`` tokens (1 up to the trained length)."""
    scale = max(length, trained) / trained
    return 1.0 if scale <= 1 else 0.1 * math.log(scale) + 1.0


@dataclass(frozen=True)
class RopePlan:
    """hf-overrides entries for positions and rope, and what the user should know about them."""

    overrides: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _scaling(rope: RopeScaling | None, shape: ModelShape | None) -> dict[str, Any]:
    """The user's rope_scaling mapping with the model's own rope_theta filled in."""
    if rope is None:
        scaling: dict[str, Any] = {"rope_type": "dynamic", "factor": 1.0}
    else:
        scaling = {"rope_type": rope.type, "factor": rope.factor}
        if rope.original_max_position_embeddings is not None:
            scaling["original_max_position_embeddings"] = rope.original_max_position_embeddings
        elif rope.type == "yarn" and shape is not None:
            scaling["original_max_position_embeddings"] = shape.native_context
    # rope_theta goes inside the rope_scaling mapping: vLLM applies a mapping-valued override after the
    # flat keys and replaces the rope parameters wholesale, so a flat rope_theta would be dropped and
    # the -32K variants would silently run with the default base of 10000.
    theta = rope.rope_theta if rope is not None and rope.rope_theta is not None else None
    if theta is None and shape is not None:
        theta = shape.rope_theta
    if theta is not None:
        scaling["rope_theta"] = theta
    return scaling


def trained_length(rope: RopeScaling | None, shape: ModelShape | None) -> int | None:
    """The length TeleChat's NTK formula is anchored to: the catalog's, else the user's native context."""
    if shape is not None:
        return shape.trained_context
    if rope is not None:
        return rope.original_max_position_embeddings
    return None


def plan_rope(rope: RopeScaling | None, shape: ModelShape | None, served: int | None) -> RopePlan:
    """hf-overrides for a context of ``served`` tokens (None: unknown, left to vLLM)."""
    if served is None:
        if rope is None:
            return RopePlan({})
        return RopePlan(
            {"rope_scaling": _scaling(rope, shape)},
            [
                "engine.maxModelLen is not set for a model outside the catalog: vLLM derives the context "
                f"from config.json and covers {VLLM_FALLBACK_POSITIONS} positions when it has no "
                "max_position_embeddings; set maxModelLen to have the positions rendered"
            ],
        )
    overrides: dict[str, Any] = {"max_position_embeddings": served}
    notes: list[str] = []
    trained = trained_length(rope, shape)
    kind = rope.type if rope is not None else "dynamic"
    if kind == "linear" and rope is not None:
        # Linear scaling's table is max_position_embeddings x factor long: keep the native length there.
        native = rope.original_max_position_embeddings or (shape.native_context if shape else None)
        overrides["max_position_embeddings"] = max(native or 0, math.ceil(served / rope.factor))
        overrides["rope_scaling"] = _scaling(rope, shape)
    elif kind == "yarn":
        overrides["rope_scaling"] = _scaling(rope, shape)
        # vLLM does not multiply YaRN's factor into the derived length, and takes the smallest of the
        # config's length keys: TeleChat's seq_length must say the served length too.
        overrides["seq_length"] = served
    elif trained is not None and (rope is not None or served > trained):
        scaling = _scaling(rope, shape)
        alpha = telechat_ntk_alpha(served, trained)
        # With alpha, vLLM builds TeleChat's NTK base; factor stays for vLLM's length check and for
        # transformers' validation of a dynamic rope mapping.
        scaling["alpha"] = float(alpha)
        overrides["rope_scaling"] = scaling
        if alpha > 1:
            notes.append(
                f"rope: TeleChat's dynamic NTK alpha {alpha} (trained length {trained}, up to {served} "
                "tokens) applies to every prompt, as vLLM keeps one rotary table; TeleChat's attention "
                f"scale ({telechat_mscale(served, trained):.3f} at {served}) has no vLLM equivalent"
            )
    elif rope is not None:
        overrides["rope_scaling"] = _scaling(rope, shape)
        notes.append(
            "rope: the model's trained length is unknown (set engine.ropeScaling."
            "originalMaxPositionEmbeddings); vLLM's dynamic rope with only a factor leaves the base unscaled"
        )
    return RopePlan(overrides, notes)


def rotary_positions(overrides: dict[str, Any]) -> int:
    """Rows of the cos/sin table vLLM builds from these overrides (TeleChat configs carry no own key)."""
    positions = int(overrides.get("max_position_embeddings", VLLM_FALLBACK_POSITIONS))
    scaling = overrides.get("rope_scaling") or {}
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        return int(positions * scaling["factor"])
    if kind == "yarn":
        original = scaling.get("original_max_position_embeddings", positions)
        return int(original * scaling["factor"])
    # default, dynamic with alpha, and dynamic with factor all span max_position_embeddings.
    return positions


def vllm_length_limit(seq_length: int, overrides: dict[str, Any]) -> int:
    """The longest max_model_len vLLM accepts: the smallest length key, times factor except for YaRN."""
    keys = [int(overrides.get("seq_length", seq_length))]
    if "max_position_embeddings" in overrides:
        keys.append(int(overrides["max_position_embeddings"]))
    limit = min(keys)
    scaling = overrides.get("rope_scaling") or {}
    if scaling and scaling.get("rope_type") not in ("yarn", "longrope", "llama3"):
        limit = int(limit * float(scaling.get("factor", 1.0)))
    return limit


def image_vllm_version(image: str) -> tuple[int, int] | None:
    """(major, minor) from an image tag such as ``vllm/vllm-openai:v0.33.0``; None for digests/other tags."""
    if "@" in image:
        return None
    match = _VERSION_IN_IMAGE.search(image)
    return (int(match.group(1)), int(match.group(2))) if match else None


def rotary_code_verified(image: str) -> bool:
    version = image_vllm_version(image)
    low, high = VERIFIED_VLLM_RANGE
    return version is not None and low <= version <= high
