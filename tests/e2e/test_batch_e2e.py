"""Real vLLM (CPU build) runs a TeleChatBatchJob's pod: OpenAI batch JSONL in, one result per request out.

Flow: a TeleChatBatchJob is applied to the real control plane; the operator checks the input ConfigMap and
the volumes, renders its ConfigMap and Job; the Job controller makes the pod; the scheduler binds it to a
Node this test registers, played by the tree's one local node (hack/local_node.py; kwok would mark the pod
Succeeded without running anything). It runs the pod's exact command, arguments, environment and mounted
ConfigMap files with the vLLM CPU environment as the image, then writes the outcome to the pod status the
way a kubelet does: phase Succeeded or Failed, the exit code, and the termination message from
/dev/termination-log. The Job controller sees the pod finish and completes the Job; the operator reads the
counts from the termination message. Only the image (python3), the mount paths and /dev/termination-log are
substituted; the test prints every substitution.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.helpers import Cluster, wait_for
from tests.operator_process import OperatorProcess, start_operator, stop_operator

from local_node import CPU_IMAGE_ENV, LocalNode  # hack/ is on sys.path (tests/e2e/conftest.py)

SERVED = "telechat-tiny"
DEFAULT_MAX_TOKENS = 12  # spec.sampling.maxTokens: what a request without max_tokens gets
# What a vLLM CPU image would set on top of the container's own environment.


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_models: Path) -> Path:
    """The TeleChat2-layout checkpoint of the session's tiny models (tests/e2e/conftest.py)."""
    return tiny_models / "telechat2"


@pytest.fixture(scope="module")
def batch_operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    op = start_operator(cluster, name="operator-batch-e2e")
    try:
        yield op
    finally:
        stop_operator(cluster, op)


@pytest.fixture
def batch_node(cluster: Cluster, k8s: Any, vllm_python: str, tmp_path: Path) -> Iterator[LocalNode]:
    """A node of its own per test (the test's pods select it by hostname)."""
    kubelet = LocalNode(k8s, f"local-batch-{secrets.token_hex(3)}", vllm_python, tmp_path / "kubelet")
    kubelet.register()
    try:
        yield kubelet
    finally:
        kubelet.stop()


# --- the test ---------------------------------------------------------------------------------------------


def host_volume(cluster: Cluster, ns: str, claim: str, path: Path, mode: str) -> None:
    pv = f"{ns}-{claim}"
    docs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "labels": {"telechat.test/namespace": ns}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": [mode],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path)},
                "claimRef": {"namespace": ns, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": ns},
            "spec": {
                "accessModes": [mode],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs), check=True)


def chat(custom_id: str, content: str, **body: Any) -> str:
    request = {"messages": [{"role": "user", "content": content}], **body}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": request}
    )


# Input order is output order. Two malformed lines: one is not JSON, one is a request vLLM's own model
# refuses (no messages), which vLLM 0.32's run_batch would raise on, losing the whole batch.
REQUESTS = [
    chat("llm-1", "Tell me something about large language models.", model=SERVED, max_tokens=8),
    '{"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions", "body": {',
    chat("llm-2", "Tell me something about large language models.", model=SERVED, max_tokens=8),
    json.dumps(
        {
            "custom_id": "no-messages",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"prompt": "hi"},
        }
    ),
    chat("defaults", "请介绍一下中国电信。"),
    chat("zh", "你好", model=SERVED, max_tokens=4),
]


def get_json(cluster: Cluster, *args: str) -> Any:
    proc = cluster.kubectl("get", *args, "-o", "json")
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def test_batch_of_chat_requests_through_real_vllm(
    cluster: Cluster,
    namespace: str,
    batch_operator: OperatorProcess,
    batch_node: LocalNode,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    results = tmp_path / "results"
    results.mkdir(mode=0o777)
    host_volume(cluster, namespace, "tiny-model", tiny_model_dir, "ReadOnlyMany")
    host_volume(cluster, namespace, "results", results, "ReadWriteOnce")
    try:
        spec = {
            "model": {
                "name": "Tele-AI/TeleChat2-3B",
                "servedModelName": SERVED,
                "pvc": {"claimName": "tiny-model"},
            },
            "engine": {"dtype": "bfloat16", "maxModelLen": 2048},
            # The guide's defaults; max_tokens small so the default is visible in a response.
            "sampling": {"temperature": 0.0, "repetitionPenalty": 1.05, "maxTokens": DEFAULT_MAX_TOKENS},
            "scheduling": {"nodeSelector": {"kubernetes.io/hostname": batch_node.node_name}},
            "input": {"configMap": {"name": "prompts", "key": "requests.jsonl"}},
            "output": {"pvc": {"claimName": "results", "path": "runs/tiny.jsonl"}},
        }
        docs = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "prompts"},
                "data": {"requests.jsonl": "\n".join(REQUESTS) + "\n"},
            },
            {
                "apiVersion": "telechat.ai/v1alpha1",
                "kind": "TeleChatBatchJob",
                "metadata": {"name": "tiny"},
                "spec": spec,
            },
        ]
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), check=True)

        pod = wait_for(
            lambda: batch_node.bound_pod(namespace),
            timeout=90,
            message="the batch pod bound to the local node",
        )
        assert pod is not None
        ran = batch_node.finished(pod)
        code, message, seconds = ran.exit_code, ran.message, ran.seconds
        print(
            f"batch pod ran for {seconds:.1f} s (vLLM start, 6 requests, exit); termination message: "
            f"{message}"
        )
        assert code == 0, message

        def succeeded() -> dict[str, Any] | None:
            obj = get_json(cluster, "tcb", "tiny", "-n", namespace)
            return obj if (obj or {}).get("status", {}).get("phase") == "Succeeded" else None

        done = wait_for(succeeded, timeout=60, message="TeleChatBatchJob Succeeded")
        status = done["status"]
        assert status["requests"] == {"total": 6, "succeeded": 4, "failed": 2, "invalid": 2}
        assert status["progress"] == "6/6"
        complete = next(c for c in status["conditions"] if c["type"] == "Complete")
        assert (
            complete["message"]
            == "4 of 6 requests answered, 2 with an error line. Results: pvc://results/runs/tiny.jsonl."
        )
        assert get_json(cluster, "job", "tiny-batch", "-n", namespace)["status"]["succeeded"] == 1

        rows = [json.loads(line) for line in (results / "runs" / "tiny.jsonl").read_text().splitlines()]
        assert [r["custom_id"] for r in rows] == ["llm-1", None, "llm-2", "no-messages", "defaults", "zh"]
        answers = {r["custom_id"]: r for r in rows if r["error"] is None}
        assert set(answers) == {"llm-1", "llm-2", "defaults", "zh"}
        for row in answers.values():
            body = row["response"]["body"]
            assert row["response"]["status_code"] == 200 and body["model"] == SERVED
            assert body["choices"][0]["message"]["role"] == "assistant"
        # temperature 0.0 by default (generation_config.json from spec.sampling): same prompt, same answer.
        first, second = (
            answers[k]["response"]["body"]["choices"][0]["message"]["content"] for k in ("llm-1", "llm-2")
        )
        assert first == second
        assert answers["llm-1"]["response"]["body"]["usage"]["completion_tokens"] <= 8
        # A request without max_tokens gets spec.sampling.maxTokens (the tiny model never stops early).
        assert answers["defaults"]["response"]["body"]["usage"]["completion_tokens"] == DEFAULT_MAX_TOKENS
        broken, no_messages = rows[1], rows[3]
        assert broken["error"]["line"] == 2 and "not JSON" in broken["error"]["message"]
        assert no_messages["response"]["status_code"] == 400 and "messages" in no_messages["error"]["message"]
        print(f"end-to-end batch test: {time.monotonic() - began:.1f} s")
    finally:
        cluster.kubectl("delete", "pv", "-l", f"telechat.test/namespace={namespace}", "--wait=false")


def test_a_vllm_failure_is_reported_in_status(
    cluster: Cluster,
    namespace: str,
    batch_operator: OperatorProcess,
    batch_node: LocalNode,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """vLLM cannot load the model: the pod fails, the Job fails, and vLLM's own error is in the status."""
    results = tmp_path / "results"
    results.mkdir()
    host_volume(cluster, namespace, "tiny-model", tiny_model_dir, "ReadOnlyMany")
    host_volume(cluster, namespace, "results", results, "ReadWriteOnce")
    try:
        spec = {
            # The volume exists (so the pre-flight passes) but holds no checkpoint at this path.
            "model": {
                "name": "Tele-AI/TeleChat2-3B",
                "pvc": {"claimName": "tiny-model", "path": "no-such-model"},
            },
            "engine": {"dtype": "bfloat16"},
            "scheduling": {"nodeSelector": {"kubernetes.io/hostname": batch_node.node_name}},
            "input": {"configMap": {"name": "prompts", "key": "requests.jsonl"}},
            "output": {"pvc": {"claimName": "results", "path": "out.jsonl"}},
            "backoffLimit": 0,
        }
        docs = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "prompts"},
                "data": {"requests.jsonl": REQUESTS[0]},
            },
            {
                "apiVersion": "telechat.ai/v1alpha1",
                "kind": "TeleChatBatchJob",
                "metadata": {"name": "nomodel"},
                "spec": spec,
            },
        ]
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), check=True)
        pod = wait_for(
            lambda: batch_node.bound_pod(namespace), timeout=90, message="the batch pod on the local node"
        )
        assert pod is not None
        ran = batch_node.finished(pod)
        code, message, seconds = ran.exit_code, ran.message, ran.seconds
        print(f"failing batch pod ran for {seconds:.1f} s; termination message:\n{message}")
        assert code == 1 and message.startswith("vLLM run-batch exited with code 1; its last log lines:")

        def failed() -> dict[str, Any] | None:
            obj = get_json(cluster, "tcb", "nomodel", "-n", namespace)
            return obj if (obj or {}).get("status", {}).get("phase") == "Failed" else None

        status = wait_for(failed, timeout=60, message="TeleChatBatchJob Failed")["status"]
        cond = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert cond["reason"] == "BackoffLimitExceeded"
        assert "vLLM run-batch exited with code 1" in status["message"]
        assert message.splitlines()[-1] in status["message"], "vLLM's own last line reaches the status"
        assert not (results / "out.jsonl").exists()
    finally:
        cluster.kubectl("delete", "pv", "-l", f"telechat.test/namespace={namespace}", "--wait=false")


def test_rendered_config_holds_only_options_run_batch_accepts(vllm_python: str, tmp_path: Path) -> None:
    """vLLM's own run_batch parser reads the rendered --config file (every option of the batch renderer)."""
    from telechat_operator.api import constants as c
    from telechat_operator.batch.kind import KIND
    from telechat_operator.config import OperatorConfig
    from telechat_operator.render import Owner

    spec = {
        "model": {"name": "TeleChat/TeleChat2-115B", "revision": "main", "servedModelName": "tc"},
        "engine": {
            "dtype": "float16",
            "maxModelLen": 16384,
            "gpuMemoryUtilization": 0.9,
            "ropeScaling": {"type": "dynamic", "factor": 3.0},
            "extraArgs": ["--max-num-seqs=8"],
        },
        "sampling": {"temperature": 0.0, "repetitionPenalty": 1.05, "maxTokens": 512},
        "features": {"toolCalling": {"enabled": True}, "structuredOutputs": {"backend": "xgrammar"}},
        "input": {"configMap": {"name": "p", "key": "k"}},
        "output": {"pvc": {"claimName": "r", "path": "o.jsonl"}},
    }
    objects = KIND.render(KIND.check(spec, OperatorConfig()), Owner(c.API_VERSION, c.BATCH_KIND, "x", "ns"))
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    (tmp_path / "vllm.yaml").write_text(configmap["data"]["vllm.yaml"])
    job = next(o for o in objects if o["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    vllm_args = args[args.index("--config") :]
    vllm_args[1] = str(tmp_path / "vllm.yaml")
    probe = (
        "import sys, json\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "from vllm.entrypoints.launchers.run_batch import make_arg_parser\n"
        "a = make_arg_parser(FlexibleArgumentParser()).parse_args(sys.argv[1:] + ['-i', 'in', '-o', 'out'])\n"
        "print(json.dumps({k: str(v) for k, v in vars(a).items()}))\n"
    )
    proc = subprocess.run(
        [vllm_python, "-c", probe, *vllm_args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **CPU_IMAGE_ENV},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed["model"] == "Tele-AI/TeleChat2-115B" and parsed["tensor_parallel_size"] == "4"
    assert parsed["max_model_len"] == "16384" and parsed["max_num_seqs"] == "8"
    assert "rope_scaling" in parsed["hf_overrides"] and parsed["chat_template"].endswith(
        "chat_template.jinja"
    )
    assert parsed["enable_auto_tool_choice"] == "True" and parsed["generation_config"] == "/etc/telechat"
