"""Renderer: goldens for the examples, and the properties every rendering must have."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from telechat_operator.api import constants as c
from telechat_operator.catalog import resolve_model
from telechat_operator.cli import render_documents
from telechat_operator.config import OperatorConfig
from telechat_operator.deployment.reconciler import check_deployment
from telechat_operator.deployment.render import render_deployment_set
from telechat_operator.render import Owner
from telechat_operator.render.engine_vllm import CHAT_TEMPLATE_FILE, CONFIG_FILE, GENERATION_CONFIG_FILE

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("telechat*.yaml"))
OWNER = Owner(c.API_VERSION, c.KIND, "demo", "ns1", uid="1234")


def render(spec: dict[str, Any], config: OperatorConfig | None = None) -> dict[str, dict[str, Any]]:
    cfg = config or OperatorConfig()
    checked = check_deployment(spec, cfg)
    objs = render_deployment_set(checked.spec, checked.effective, OWNER).objects
    return {o["kind"]: o for o in objs}


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return found


def vllm_yaml(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(objs["ConfigMap"]["data"][CONFIG_FILE])
    return loaded


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_goldens(example: Path) -> None:
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    text, _ = render_documents(docs, OperatorConfig(), "default")
    golden = GOLDEN / example.name
    if os.environ.get("UPDATE_GOLDENS"):
        golden.write_text(text)
    assert golden.exists(), f"no golden for {example.name}; run UPDATE_GOLDENS=1 pytest {__file__}"
    assert text == golden.read_text(), f"rendering of {example.name} changed; review, then UPDATE_GOLDENS=1"


def test_rendering_is_deterministic() -> None:
    spec = yaml.safe_load((ROOT / "examples/telechat-115b.yaml").read_text())["spec"]
    assert json.dumps(render(spec), sort_keys=True) == json.dumps(render(spec), sort_keys=True)


def test_115b_guide_settings() -> None:
    spec = yaml.safe_load((ROOT / "examples/telechat-115b.yaml").read_text())["spec"]
    objs = render(spec)
    options = vllm_yaml(objs)
    assert options["model"] == "Tele-AI/TeleChat2-115B"
    assert options["tensor-parallel-size"] == 4
    assert options["dtype"] == "float16"
    assert options["trust-remote-code"] is True
    overrides = options["hf-overrides"]
    # vLLM registers TeleChat2ForCausalLM only; the 115B checkpoint names TelechatForCausalLM.
    assert overrides["architectures"] == ["TeleChat2ForCausalLM"]
    # TeleChat's NTK alpha for 24576 tokens over its trained 8192 (2 ** ceil(log2(3) + 1) - 1 = 7).
    assert overrides["rope_scaling"] == {
        "rope_type": "dynamic",
        "factor": 3.0,
        "rope_theta": 10000.0,
        "alpha": 7.0,
    }
    # vLLM sizes the rope table from max_position_embeddings (8192 when absent, as in TeleChat's config).
    assert overrides["max_position_embeddings"] == options["max-model-len"] == 24576
    assert "rope_theta" not in overrides  # a flat rope_theta is dropped by vLLM next to rope_scaling
    gen = json.loads(objs["ConfigMap"]["data"][GENERATION_CONFIG_FILE])
    assert gen == {"temperature": 0.0, "repetition_penalty": 1.05, "max_new_tokens": 512}
    # TeleChat2-115B ships no chat template: the operator's is mounted and passed.
    assert "<_user>" in objs["ConfigMap"]["data"][CHAT_TEMPLATE_FILE]
    assert options["chat-template"].endswith(CHAT_TEMPLATE_FILE)
    res = container(objs)["resources"]
    assert res["requests"]["nvidia.com/gpu"] == "4" and res["limits"]["nvidia.com/gpu"] == "4"
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_gpus_are_tp_times_pp_and_shm_scales() -> None:
    objs = render(
        {
            "model": {"name": "Tele-AI/TeleChat2-115B"},
            "engine": {"tensorParallelSize": 2, "pipelineParallelSize": 4},
        }
    )
    assert container(objs)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    vols = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "17Gi"}


def test_default_tensor_parallel_from_catalog() -> None:
    assert vllm_yaml(render({"model": {"name": "telechat2-115b"}}))["tensor-parallel-size"] == 4
    assert vllm_yaml(render({"model": {"name": "Tele-AI/TeleChat2-7B"}}))["tensor-parallel-size"] == 1


def test_guide_ids_resolve_to_tele_ai() -> None:
    for name in ("TeleChat/TeleChat2-7B", "TeleChat2/TeleChat2-7B", "telechat2-7b"):
        assert vllm_yaml(render({"model": {"name": name}}))["model"] == "Tele-AI/TeleChat2-7B"
    # Unknown models pass through untouched, without catalog fixes.
    options = vllm_yaml(render({"model": {"name": "someone/other-model"}}))
    assert options["model"] == "someone/other-model" and "hf-overrides" not in options


def test_7b_32k_rope_theta_is_sent_with_rope_scaling() -> None:
    spec = {
        "model": {"name": "Tele-AI/TeleChat2-7B-32K"},
        "engine": {"ropeScaling": {"type": "dynamic", "factor": 2}},
    }
    overrides = vllm_yaml(render(spec))["hf-overrides"]
    assert overrides["rope_scaling"]["rope_theta"] == 1_000_000.0


def test_config_change_rolls_pods_and_secrets_stay_references() -> None:
    base = {
        "model": {"name": "Tele-AI/TeleChat2-7B", "hfTokenSecretRef": {"name": "hf"}},
        "apiKeySecretRef": {"name": "api", "key": "k"},
    }
    a = render(base)
    b = render({**base, "sampling": {"temperature": 0.3}})
    hash_a = a["Deployment"]["spec"]["template"]["metadata"]["annotations"][f"{c.GROUP}/config-hash"]
    hash_b = b["Deployment"]["spec"]["template"]["metadata"]["annotations"][f"{c.GROUP}/config-hash"]
    assert hash_a != hash_b
    env = {e["name"]: e for e in container(a)["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["VLLM_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "api", "key": "k"}}
    dumped = json.dumps(a)
    assert "api-key" not in vllm_yaml(a) and "hf_" not in dumped


def test_probes_budget_follows_model_size_and_source() -> None:
    def startup(spec: dict[str, Any]) -> int:
        probe = container(render(spec))["startupProbe"]
        return int(probe["periodSeconds"] * probe["failureThreshold"])

    download_115b = startup({"model": {"name": "Tele-AI/TeleChat2-115B"}})
    download_7b = startup({"model": {"name": "Tele-AI/TeleChat2-7B"}})
    pvc_115b = startup({"model": {"name": "Tele-AI/TeleChat2-115B", "pvc": {"claimName": "w"}}})
    assert download_115b > pvc_115b > download_7b >= 600
    # A download is followed by the load into GPU memory: the budget holds both, not the download alone.
    budgets = OperatorConfig().probe_budgets
    shape = resolve_model("Tele-AI/TeleChat2-115B").shape
    assert shape is not None
    download_only = budgets.download_base_seconds + shape.weights_gb("auto") * budgets.download_seconds_per_gb
    assert download_115b >= download_only + shape.weights_gb("auto") * budgets.load_seconds_per_gb
    assert (
        startup({"model": {"name": "Tele-AI/TeleChat2-7B"}, "probes": {"startupBudgetSeconds": 7200}}) == 7200
    )


def test_pvc_source_mounts_read_only_and_goes_offline() -> None:
    objs = render(
        {"model": {"name": "Tele-AI/TeleChat2-7B", "pvc": {"claimName": "weights", "path": "tc/7b"}}}
    )
    assert vllm_yaml(objs)["model"] == "/models/tc/7b"
    env = {e["name"]: e.get("value") for e in container(objs)["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["model"]["readOnly"] is True
    assert "PersistentVolumeClaim" not in objs


def test_rollout_never_surges_and_children_are_owned() -> None:
    objs = render({"model": {"name": "Tele-AI/TeleChat2-7B", "cache": {"size": "40Gi"}}})
    assert objs["Deployment"]["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    for obj in objs.values():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == "1234" and ref["controller"] is True and ref["kind"] == c.KIND
    assert objs["Service"]["spec"]["ports"][0]["name"] == "http"


def test_features_and_extra_args() -> None:
    objs = render(
        {
            "model": {"name": "Tele-AI/TeleChat2-7B"},
            "engine": {"extraArgs": ["--enable-prefix-caching", "--max-num-seqs=64"]},
            "features": {"toolCalling": {"enabled": True}, "structuredOutputs": {"backend": "xgrammar"}},
        }
    )
    options = vllm_yaml(objs)
    assert options["enable-auto-tool-choice"] is True and options["tool-call-parser"] == "hermes"
    assert options["structured-outputs-config"] == {"backend": "xgrammar"}
    assert container(objs)["args"] == [
        "--config",
        "/etc/telechat/vllm.yaml",
        "--enable-prefix-caching",
        "--max-num-seqs=64",
    ]
