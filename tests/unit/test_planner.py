"""GPU memory planner: exact weights from the shapes, vLLM's KV arithmetic, and the figures vLLM reported."""

from __future__ import annotations

from typing import Any

import pytest

from telechat_operator import planner
from telechat_operator.api.spec import TeleChatDeploymentSpec
from telechat_operator.catalog import ModelShape, resolve_model
from telechat_operator.config import OperatorConfig
from telechat_operator.resolve import effective
from telechat_operator.validation import Verdict, parse_as, validate

GIB = planner.GIB


def shape(name: str) -> ModelShape:
    found = resolve_model(name).shape
    assert found is not None
    return found


SEVEN, BIG = shape("Tele-AI/TeleChat2-7B"), shape("Tele-AI/TeleChat2-115B")
H200 = planner.gpu_total_bytes("NVIDIA-H200")


def test_parameters_are_counted_from_the_shape() -> None:
    # The random-weight 7B checkpoint the bench writes holds 7,617,351,680 parameters (bench/results/gpu).
    assert planner.parameters_per_gpu(SEVEN) == 7_617_351_680
    # The 115B layout at 4 of 96 layers: 6,778,134,528 parameters written.
    assert planner.parameters_per_gpu(BIG, layers=4) == 6_778_134_528


def test_tensor_parallel_splits_everything_but_norms_and_biases() -> None:
    one, four = planner.parameters_per_gpu(BIG, 1), planner.parameters_per_gpu(BIG, 4)
    assert one / 4 < four < one / 4 * 1.001
    # 8 KV heads over 16 ranks: each rank keeps one (replicated), never zero.
    assert planner.kv_heads_per_rank(BIG, 16) == 1


def test_pipeline_stages_hold_their_share_of_layers_and_one_end() -> None:
    full = planner.parameters_per_gpu(BIG, 4, 1)
    staged = planner.parameters_per_gpu(BIG, 4, 2)
    assert staged < full
    assert (
        staged == 48 * planner.layer_parameters(BIG, 4) + planner.vocab_parameters(BIG, 4) + BIG.hidden_size
    )


def test_auto_downcasts_float32_checkpoints_like_vllm() -> None:
    assert planner.loaded_dtype("auto", BIG) == "bfloat16"
    assert planner.loaded_dtype("auto", SEVEN) == "bfloat16"
    assert planner.loaded_dtype("float16", BIG) == "float16"


def test_kv_bytes_per_token() -> None:
    # 2 x 30 layers x 32 KV heads x 128 x 2 bytes = 480 KiB; the 115B's 8 KV heads at 4 layers: 16 KiB.
    assert planner.kv_bytes_per_token(SEVEN, "bfloat16") == 491_520
    assert planner.kv_bytes_per_token(BIG, "float16", layers=4) == 16_384
    assert planner.kv_bytes_per_token(BIG, "float16", tp=4) == 2 * 96 * 2 * 128 * 2


@pytest.mark.parametrize(
    ("model", "dtype", "layers", "vllm_weights_gib", "vllm_kv_gib", "vllm_tokens"),
    [
        # vLLM 0.24.0 on the lent H200 at gpu-memory-utilization 0.92 (bench/results/gpu, 7b-defaults and
        # 115b-layout): "Model loading took", "Available KV cache memory", "GPU KV cache size".
        ("Tele-AI/TeleChat2-7B", "bfloat16", None, 14.2, 111.77, 244_144),
        ("Tele-AI/TeleChat2-115B", "float16", 4, 12.63, 112.77, 7_390_592),
    ],
)
def test_plan_matches_what_vllm_reported_on_the_h200(
    model: str, dtype: str, layers: int | None, vllm_weights_gib: float, vllm_kv_gib: float, vllm_tokens: int
) -> None:
    assert H200 is not None
    plan = planner.plan(shape(model), H200, dtype=dtype, layers=layers, max_model_len=24576)
    assert plan.weights_bytes / GIB == pytest.approx(vllm_weights_gib, rel=0.01)
    assert plan.kv_cache_bytes / GIB == pytest.approx(vllm_kv_gib, rel=0.05)
    assert plan.kv_tokens == pytest.approx(vllm_tokens, rel=0.05)


def test_scheduler_defaults_follow_vllms_gpu_size() -> None:
    assert planner.EngineLimits().resolved(141 * GIB) == (8192, 1024)
    assert planner.EngineLimits().resolved(24 * GIB) == (2048, 256)
    assert planner.EngineLimits(max_num_batched_tokens=16384).resolved(141 * GIB) == (16384, 1024)


def test_a_plan_that_cannot_hold_one_request() -> None:
    # TeleChat2-115B in bf16 on one 80 GB H100: the weights alone do not fit.
    h100 = planner.gpu_total_bytes("NVIDIA-H100-80GB-HBM3")
    assert h100 is not None
    plan = planner.plan(BIG, h100, dtype="bfloat16", max_model_len=24576)
    assert plan.kv_cache_bytes < 0 and plan.kv_tokens == 0 and not plan.fits_one_request
    assert "0 tokens" in plan.describe()


def test_smallest_tensor_parallel_size() -> None:
    h100 = planner.gpu_total_bytes("NVIDIA-H100-80GB-HBM3")
    assert h100 is not None
    chosen = planner.smallest_tensor_parallel_size(BIG, h100, dtype="float16", max_model_len=24576)
    assert chosen is not None
    tp, plan = chosen
    assert tp == 4 and plan.full_length_requests >= 4
    assert planner.smallest_tensor_parallel_size(SEVEN, h100, max_model_len=32768) is not None


def test_unknown_gpu_product() -> None:
    assert planner.gpu_total_bytes("ACME-Accelerator") is None
    assert planner.gpu_total_bytes("Some-GPU-48GB") == 48 * GIB


def _big_spec(**engine: object) -> dict[str, object]:
    return {
        "model": {"name": "Tele-AI/TeleChat2-115B", "trustRemoteCode": True},
        "engine": {
            "dtype": "float16",
            "tensorParallelSize": 4,
            "maxModelLen": 24576,
            "ropeScaling": {"type": "dynamic", "factor": 3.0},
            **engine,
        },
        "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
    }


def _verdict(raw: dict[str, Any]) -> Verdict:
    spec = parse_as(TeleChatDeploymentSpec, raw)
    return validate(spec, effective(spec, OperatorConfig()))


def test_admission_refuses_a_kv_cache_that_cannot_hold_one_request() -> None:
    # The weights fit 4 x 80 GB at 0.72, but what is left holds fewer than 24576 tokens per GPU.
    verdict = _verdict(_big_spec(gpuMemoryUtilization=0.72))
    [error] = [e for e in verdict.errors if "KV cache" in e]
    assert "GiB weights" in error and "tokens" in error and "tensorParallelSize 8 would hold" in error
    assert _verdict(_big_spec()).ok


def test_admission_reads_the_batch_budget_from_extra_args() -> None:
    limits = planner.limits_from_args(
        ["--max-num-batched-tokens=16384", "--max-num-seqs", "64", "--enforce-eager"]
    )
    assert limits == planner.EngineLimits(16384, 64, cuda_graphs=False)


def test_unknown_gpu_product_is_a_warning() -> None:
    spec = _big_spec()
    spec["resources"] = {"gpuProduct": "ACME-Accelerator"}
    verdict = _verdict(spec)
    assert verdict.ok and any("ACME-Accelerator is unknown" in w for w in verdict.warnings)


@pytest.mark.parametrize(
    ("model", "product", "tp"),
    [
        ("Tele-AI/TeleChat2-7B", "NVIDIA-H100-80GB-HBM3", 1),
        ("Tele-AI/TeleChat2-115B", "NVIDIA-H200", 2),
        ("Tele-AI/TeleChat2-115B", "NVIDIA-H100-80GB-HBM3", 4),
    ],
)
def test_tensor_parallel_default_is_planned_for_the_gpu_product(model: str, product: str, tp: int) -> None:
    raw = {"model": {"name": model, "trustRemoteCode": True}, "engine": {"dtype": "bfloat16"}}
    raw["resources"] = {"gpuProduct": product}
    spec = parse_as(TeleChatDeploymentSpec, raw)
    eff = effective(spec, OperatorConfig())
    assert eff.tensor_parallel_size == tp
    [note] = [n for n in eff.notes if "planned" in n]
    assert note.startswith(f"tensorParallelSize {tp} planned for {product}") and "tokens" in note
    assert _verdict(raw).ok


def test_tensor_parallel_without_a_gpu_product_stays_the_catalog_default() -> None:
    raw = {"model": {"name": "Tele-AI/TeleChat2-115B", "trustRemoteCode": True}}
    eff = effective(parse_as(TeleChatDeploymentSpec, raw), OperatorConfig())
    assert eff.tensor_parallel_size == 4 and not any("planned" in n for n in eff.notes)
