"""Batch renderer: the Job shares the serving pod's engine config, GPUs, /dev/shm, cache and Secrets, and
adds only the runner, the input/output volumes and the Job around them. The example's golden is checked by
test_render.py (every examples/telechat*.yaml has one); a fuller spec has its own golden here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from telechat_operator.api import constants as c
from telechat_operator.batch.render import (
    COMPONENT,
    RUNNER_FILE,
    batch_names,
    render_batch,
    runner_source,
)
from telechat_operator.batch.runner import EXIT_BAD_INPUT, EXIT_BAD_OUTPUT
from telechat_operator.batch.validation import check_batch
from telechat_operator.config import OperatorConfig
from telechat_operator.render import Owner
from telechat_operator.render.engine_vllm import CHAT_TEMPLATE_FILE, CONFIG_FILE, GENERATION_CONFIG_FILE
from telechat_operator.render.names import child_names
from telechat_operator.validation import SpecError
from telechat_operator.yamlio import dump_all

GOLDEN = Path(__file__).parent / "golden"
OWNER = Owner(c.API_VERSION, c.BATCH_KIND, "nightly", "ns1", uid="uid-1")

BASE: dict[str, Any] = {
    "model": {"name": "Tele-AI/TeleChat2-7B"},
    "input": {"configMap": {"name": "prompts", "key": "batch.jsonl"}},
    "output": {"pvc": {"claimName": "results", "path": "runs/out.jsonl"}},
}

FULL: dict[str, Any] = {
    "model": {
        "name": "TeleChat/TeleChat2-115B",
        "pvc": {"claimName": "weights", "path": "telechat/115b"},
        "hfTokenSecretRef": {"name": "hf"},
    },
    "engine": {
        "dtype": "float16",
        "maxModelLen": 16384,
        "ropeScaling": {"type": "dynamic", "factor": 3.0},
        "extraArgs": ["--max-num-seqs=64"],
        "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}],
    },
    "sampling": {"temperature": 0.0, "repetitionPenalty": 1.05, "maxTokens": 512},
    "features": {"structuredOutputs": {"backend": "xgrammar"}},
    "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3", "cpu": 32, "memory": "512Gi"},
    "scheduling": {"nodeSelector": {"pool": "batch"}, "priorityClassName": "low"},
    "input": {"pvc": {"claimName": "batch-data", "path": "in/2026-11-24.jsonl"}},
    "output": {"pvc": {"claimName": "batch-data", "path": "out/2026-11-24.jsonl"}},
    "parallelism": 2,
    "backoffLimit": 3,
    "activeDeadlineSeconds": 7200,
    "ttlSecondsAfterFinished": 600,
}


def merged(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(json.dumps(BASE))
    spec.update(changes)
    return spec


def render(spec: dict[str, Any], owner: Owner = OWNER) -> dict[str, dict[str, Any]]:
    config = OperatorConfig()
    checked = check_batch(spec, config)
    return {o["kind"]: o for o in render_batch(checked.spec, checked.effective, owner).objects}


def pod_spec(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = objs["Job"]["spec"]["template"]["spec"]
    return result


def container(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = pod_spec(objs)["containers"][0]
    return result


def test_full_spec_matches_golden() -> None:
    objs = render(FULL)
    # The runner script is checked below; keep the golden about what the spec decides.
    objs["ConfigMap"]["data"][RUNNER_FILE] = "<runner.py>"
    text = dump_all(objs.values())
    golden = GOLDEN / "batch-115b-pvc-sharded.yaml"
    if os.environ.get("UPDATE_GOLDENS"):
        golden.write_text(text)
    assert text == golden.read_text(), "batch rendering changed; review, then UPDATE_GOLDENS=1"


def test_gpus_shm_and_restart_policy() -> None:
    objs = render(FULL)
    ctr, spec = container(objs), pod_spec(objs)
    # TeleChat2-115B: tensor parallel 4 from the catalog.
    assert ctr["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert ctr["resources"]["limits"]["memory"] == "512Gi"
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "9Gi"}
    assert spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"pool": "batch", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["priorityClassName"] == "low"
    # Nothing listens in a batch pod: no port, no probes.
    assert "ports" not in ctr
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(ctr)
    assert ctr["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_engine_config_is_the_serving_one_without_server_options() -> None:
    objs = render(FULL)
    data = objs["ConfigMap"]["data"]
    options = yaml.safe_load(data[CONFIG_FILE])
    assert "host" not in options and "port" not in options
    assert options["model"] == "/models/telechat/115b"
    assert options["tensor-parallel-size"] == 4
    assert options["hf-overrides"]["rope_scaling"] == {
        "rope_type": "dynamic",
        "factor": 3.0,
        "rope_theta": 10000.0,
        "alpha": 3.0,
    }
    assert options["hf-overrides"]["max_position_embeddings"] == 16384
    assert options["chat-template"] == f"/etc/telechat/{CHAT_TEMPLATE_FILE}"
    assert options["generation-config"] == "/etc/telechat"
    assert json.loads(data[GENERATION_CONFIG_FILE]) == {
        "temperature": 0.0,
        "repetition_penalty": 1.05,
        "max_new_tokens": 512,
    }
    assert CHAT_TEMPLATE_FILE in data
    assert data[RUNNER_FILE] == runner_source()


def test_command_runs_the_runner_around_run_batch() -> None:
    ctr = container(render(FULL))
    assert ctr["command"] == ["python3", "/etc/telechat/batch_runner.py"]
    args = ctr["args"]
    split = args.index("--")
    assert args[:split] == [
        "--input",
        "/batch/input/in/2026-11-24.jsonl",
        "--output",
        "/batch/output/out/2026-11-24.jsonl",
        "--shards",
        "2",
        "--summary-file",
        "/dev/termination-log",
        "--work-dir",
        "/tmp/telechat-batch",
    ]
    # extraArgs come last: the command line wins over the --config file.
    assert args[split + 1 :] == [
        "python3",
        "-m",
        "vllm.entrypoints.openai.run_batch",
        "--config",
        "/etc/telechat/vllm.yaml",
        "--max-num-seqs=64",
    ]


def test_secrets_are_passed_by_reference_and_no_api_key() -> None:
    env = {e["name"]: e for e in container(render(FULL))["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert "VLLM_API_KEY" not in env
    run_id = env["TELECHAT_BATCH_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert run_id == "metadata.labels['batch.kubernetes.io/controller-uid']"
    assert env["VLLM_LOGGING_LEVEL"]["value"] == "DEBUG"


def mounts_and_volumes(objs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    mounts = {m["mountPath"]: m for m in container(objs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    return mounts, volumes


def test_configmap_input_is_mounted_read_only_and_output_read_write() -> None:
    mounts, volumes = mounts_and_volumes(render(BASE))
    assert mounts["/batch/input"] == {"name": "batch-input", "mountPath": "/batch/input", "readOnly": True}
    assert volumes["batch-input"]["configMap"] == {
        "name": "prompts",
        "items": [{"key": "batch.jsonl", "path": "requests.jsonl"}],
    }
    assert mounts["/batch/output"] == {"name": "batch-output", "mountPath": "/batch/output"}
    assert volumes["batch-output"]["persistentVolumeClaim"] == {"claimName": "results"}
    assert "--input" in container(render(BASE))["args"]
    assert container(render(BASE))["args"][1] == "/batch/input/requests.jsonl"


def test_pvc_input_on_its_own_claim_is_read_only() -> None:
    spec = merged(input={"pvc": {"claimName": "inputs", "path": "a.jsonl"}})
    mounts, volumes = mounts_and_volumes(render(spec))
    assert volumes["batch-input"]["persistentVolumeClaim"] == {"claimName": "inputs", "readOnly": True}
    assert mounts["/batch/input"]["readOnly"] is True


def test_one_claim_for_input_and_output_is_one_volume_mounted_twice() -> None:
    mounts, volumes = mounts_and_volumes(render(FULL))
    assert "batch-input" not in volumes
    assert mounts["/batch/input"] == {"name": "batch-output", "mountPath": "/batch/input", "readOnly": True}
    assert mounts["/batch/output"] == {"name": "batch-output", "mountPath": "/batch/output"}


@pytest.mark.parametrize(
    ("cache", "claim", "pvc_created"),
    [
        (None, None, False),
        ({"existingClaim": "hf-cache"}, "hf-cache", False),
        ({"size": "40Gi"}, "nightly-batch-cache", True),
    ],
)
def test_model_cache(cache: dict[str, Any] | None, claim: str | None, pvc_created: bool) -> None:
    model = {"name": "Tele-AI/TeleChat2-7B", **({"cache": cache} if cache else {})}
    objs = render(merged(model=model, parallelism=3))
    volume = next(v for v in pod_spec(objs)["volumes"] if v["name"] == "model-cache")
    if claim is None:
        assert volume["emptyDir"] == {}
    else:
        assert volume["persistentVolumeClaim"] == {"claimName": claim}
    assert ("PersistentVolumeClaim" in objs) == pvc_created
    if pvc_created:
        # Three pods at once read the cache: the created claim must be mountable by all of them.
        assert objs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_job_spec() -> None:
    job = render(FULL)["Job"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert spec["backoffLimit"] == 3
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 600
    fail, ignore = spec["podFailurePolicy"]["rules"]
    assert fail["action"] == "FailJob"
    assert fail["onExitCodes"] == {
        "containerName": "vllm",
        "operator": "In",
        "values": [EXIT_BAD_INPUT, EXIT_BAD_OUTPUT],
    }
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert "selector" not in spec, "the Job controller generates the selector"
    base = render(BASE)["Job"]["spec"]
    assert "activeDeadlineSeconds" not in base and "ttlSecondsAfterFinished" not in base
    assert base["backoffLimit"] == 1


def test_children_are_owned_labelled_and_named() -> None:
    objs = render(merged(model={"name": "Tele-AI/TeleChat2-7B", "cache": {"size": "40Gi"}}))
    names = batch_names("nightly")
    assert objs["Job"]["metadata"]["name"] == names["job"] == "nightly-batch"
    assert objs["ConfigMap"]["metadata"]["name"] == names["configmap"] == "nightly-batch-config"
    assert objs["PersistentVolumeClaim"]["metadata"]["name"] == names["pvc"] == "nightly-batch-cache"
    for obj in objs.values():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["kind"] == c.BATCH_KIND and ref["uid"] == "uid-1" and ref["controller"] is True
        assert obj["metadata"]["labels"][c.LABEL_COMPONENT] == COMPONENT
        assert obj["metadata"]["labels"][c.LABEL_INSTANCE] == "nightly"
    template = objs["Job"]["spec"]["template"]
    assert template["metadata"]["labels"][c.LABEL_COMPONENT] == "batch"
    assert template["spec"]["volumes"][0]["configMap"]["name"] == "nightly-batch-config"


NAMES = [
    "a",
    "a-batch",
    "a-batch-config",
    "a-batch-cache",
    "a-model",
    "a-engine",
    "a-batch-model",
    "b-batch-batch",
]


def test_names_never_collide_with_a_telechatdeployment() -> None:
    # ConfigMaps and PVCs are the kinds both make; a Deployment/Service and a Job never share a kind.
    tcd = {
        (k, n)
        for name in NAMES
        for k, n in (("cm", child_names(name)["configmap"]), ("pvc", child_names(name)["pvc"]))
    }
    batch = {
        (k, n)
        for name in NAMES
        for k, n in (("cm", batch_names(name)["configmap"]), ("pvc", batch_names(name)["pvc"]))
    }
    assert not tcd & batch


def test_rendering_is_deterministic_and_the_spec_hash_follows_the_spec() -> None:
    config = OperatorConfig()
    checked = check_batch(FULL, config)
    first = render_batch(checked.spec, checked.effective, OWNER)
    second = render_batch(checked.spec, checked.effective, OWNER)
    assert json.dumps(first.objects, sort_keys=True) == json.dumps(second.objects, sort_keys=True)
    assert first.objects[-1]["metadata"]["annotations"] == {c.ANNOTATION_SPEC_HASH: first.spec_hash}
    changed = check_batch({**FULL, "backoffLimit": 4}, config)
    assert render_batch(changed.spec, changed.effective, OWNER).spec_hash != first.spec_hash
    template = first.objects[-1]["spec"]["template"]
    assert template["metadata"]["annotations"] == {c.ANNOTATION_CONFIG_HASH: first.config_hash}


def test_offline_rendering_has_no_owner_reference() -> None:
    objs = render(BASE, Owner(c.API_VERSION, c.BATCH_KIND, "nightly", "ns1"))
    assert all("ownerReferences" not in o["metadata"] for o in objs.values())


@pytest.mark.parametrize(
    "arg", ["-i", "-o=x", "--input-file", "--output-file=/x", "--output_tmp_dir", "--output-tmp-dir"]
)
def test_extra_args_may_not_set_input_or_output(arg: str) -> None:
    spec = merged(engine={"extraArgs": [arg]})
    with pytest.raises(SpecError, match=r"rendered by the operator from spec\.input and spec\.output"):
        check_batch(spec)


def test_shared_validation_applies_to_batch() -> None:
    spec = merged(model={"name": "Tele-AI/TeleChat2-115B"}, engine={"tensorParallelSize": 3})
    with pytest.raises(SpecError, match="valid sizes: 1, 2, 4, 8"):
        check_batch(spec)
    with pytest.raises(SpecError, match=r"spec\.engine\.extraArgs"):
        check_batch(merged(engine={"extraArgs": ["--port=9000"]}))
