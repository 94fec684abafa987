"""Positions and rope parameters for long contexts (the 8192-position defect, TeleChat's dynamic NTK)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from telechat_operator.api.spec import TeleChatDeploymentSpec
from telechat_operator.catalog import MODELS
from telechat_operator.config import OperatorConfig
from telechat_operator.deployment.reconciler import check_deployment as check
from telechat_operator.resolve import effective
from telechat_operator.rope import (
    image_vllm_version,
    rotary_code_verified,
    rotary_positions,
    telechat_mscale,
    telechat_ntk_alpha,
    vllm_length_limit,
)
from telechat_operator.validation import SpecError, Verdict, _check_context


def _spec(model: str, **engine: Any) -> dict[str, Any]:
    return {"model": {"name": model, "trustRemoteCode": True}, "engine": engine}


def _overrides(raw: dict[str, Any]) -> dict[str, Any]:
    spec = TeleChatDeploymentSpec.model_validate(raw)
    return effective(spec, OperatorConfig()).hf_overrides


@pytest.mark.parametrize(
    ("length", "alpha"),
    [(100, 1), (8192, 1), (8193, 3), (12288, 3), (16384, 3), (16385, 7), (24576, 7), (32768, 7), (32769, 15)],
)
def test_alpha_follows_telechats_get_ntk_alpha(length: int, alpha: int) -> None:
    # TeleChat: 2 ** ceil(log2(L / base_seqlen) + 1) - 1, at least 1, with L at least the trained length.
    assert telechat_ntk_alpha(length, 8192) == alpha


def test_mscale_is_one_up_to_the_trained_length() -> None:
    assert telechat_mscale(8192, 8192) == 1.0
    assert telechat_mscale(24576, 8192) == pytest.approx(1.10986, abs=1e-5)


def test_115b_guide_example_gets_positions_and_alpha() -> None:
    raw = _spec("Tele-AI/TeleChat2-115B", maxModelLen=24576, ropeScaling={"type": "dynamic", "factor": 3.0})
    overrides = _overrides(raw)
    assert overrides["max_position_embeddings"] == 24576
    assert overrides["rope_scaling"]["alpha"] == 7.0


def test_7b_default_context_is_rendered_with_telechats_ntk() -> None:
    spec = TeleChatDeploymentSpec.model_validate(_spec("Tele-AI/TeleChat2-7B"))
    eff = effective(spec, OperatorConfig())
    # The catalog's seq_length 32768 over the trained 8192: TeleChat's own code scales past 8192.
    assert eff.max_model_len == 32768
    assert eff.hf_overrides["max_position_embeddings"] == 32768
    assert eff.hf_overrides["rope_scaling"] == {
        "rope_type": "dynamic",
        "factor": 1.0,
        "rope_theta": 10000.0,
        "alpha": 7.0,
    }
    assert any("alpha 7" in note for note in eff.notes)


def test_context_within_the_trained_length_needs_no_rope_override() -> None:
    overrides = _overrides(_spec("Tele-AI/TeleChat2-7B", maxModelLen=8192))
    assert overrides["max_position_embeddings"] == 8192
    assert "rope_scaling" not in overrides


def test_yarn_renders_the_served_length_as_seq_length() -> None:
    raw = _spec("Tele-AI/TeleChat2-115B", maxModelLen=16384, ropeScaling={"type": "yarn", "factor": 2.0})
    overrides = _overrides(raw)
    assert overrides["seq_length"] == 16384
    assert overrides["rope_scaling"]["original_max_position_embeddings"] == 8192
    assert vllm_length_limit(8192, overrides) == 16384


ROPES: list[dict[str, Any] | None] = [
    None,
    {"type": "dynamic", "factor": 2.0},
    {"type": "dynamic", "factor": 3.0},
    {"type": "linear", "factor": 2.0},
    {"type": "yarn", "factor": 4.0},
]


@pytest.mark.parametrize("rope", ROPES, ids=lambda r: "none" if r is None else f"{r['type']}-{r['factor']}")
@pytest.mark.parametrize("shape", MODELS, ids=lambda s: s.short_name)
def test_every_model_and_rope_covers_its_context(shape: Any, rope: dict[str, Any] | None) -> None:
    factor = rope["factor"] if rope else 1.0
    limit = int(shape.native_context * factor)
    for served in sorted({shape.native_context // 2, shape.native_context, 8193, limit}):
        if served > limit:
            continue
        engine: dict[str, Any] = {"maxModelLen": served}
        if rope:
            engine["ropeScaling"] = rope
        overrides = _overrides(_spec(shape.model_id, **engine))
        assert rotary_positions(overrides) >= served, (served, overrides)
        assert vllm_length_limit(shape.native_context, overrides) >= served, (served, overrides)


def test_todays_rendering_is_refused_by_the_context_rule() -> None:
    """Without max_position_embeddings vLLM's table holds 8192 positions: the rule must catch it."""
    raw = _spec("Tele-AI/TeleChat2-115B", maxModelLen=24576, ropeScaling={"type": "dynamic", "factor": 3.0})
    eff = effective(TeleChatDeploymentSpec.model_validate(raw), OperatorConfig())
    old = {k: v for k, v in eff.hf_overrides.items() if k != "max_position_embeddings"}
    verdict = Verdict()
    _check_context(
        TeleChatDeploymentSpec.model_validate(raw), dataclasses.replace(eff, hf_overrides=old), verdict
    )
    assert any("covers 8192 positions" in e for e in verdict.errors)
    fixed = Verdict()
    _check_context(TeleChatDeploymentSpec.model_validate(raw), eff, fixed)
    assert fixed.errors == []


def test_context_beyond_native_times_factor_is_refused_at_admission() -> None:
    raw = _spec("Tele-AI/TeleChat2-115B", maxModelLen=32768, ropeScaling={"type": "dynamic", "factor": 3.0})
    with pytest.raises(SpecError, match="maxModelLen: 32768 exceeds"):
        check(raw)


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("docker.io/vllm/vllm-openai:v0.33.0", (0, 33)),
        ("vllm/vllm-openai:0.24.0", (0, 24)),
        ("registry.local/vllm:v0.40.1-cu130", (0, 40)),
        ("vllm/vllm-openai:latest", None),
        ("vllm/vllm-openai@sha256:" + "a" * 64, None),
    ],
)
def test_vllm_version_from_image(image: str, version: tuple[int, int] | None) -> None:
    assert image_vllm_version(image) == version


def test_unknown_vllm_version_is_a_warning_not_a_refusal() -> None:
    raw = _spec("Tele-AI/TeleChat2-115B", maxModelLen=24576, ropeScaling={"type": "dynamic", "factor": 3.0})
    verdict = check(raw)
    assert not any("rotary code" in w for w in verdict.warnings)
    raw["engine"]["image"] = "registry.local/vllm-openai:latest"
    verdict = check(raw)
    assert any("rotary code the operator knows" in w for w in verdict.warnings)
    assert not rotary_code_verified("vllm/vllm-openai:v0.40.0")
