"""Real vLLM, CPU build, serving a tiny TeleChat2 through the operator, called with the guide's client code.

Flow: a TeleChatDeployment is applied to the real control plane; the operator renders the ConfigMap and
Deployment; the scheduler binds the pod to a local node whose kubelet (hack/local_node.py) runs the
pod's exact command, arguments, environment and mounted ConfigMap files with the vLLM CPU environment as
the image. Only the image, the mount paths and the listen address are substituted; the test prints them.
The pod's own probes decide readiness, and the operator's status follows.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from openai import OpenAI
from tests.e2e.conftest import model_volume
from tests.helpers import Cluster, wait_for
from tests.integration.tcd import apply, condition, get, wait_condition
from tests.operator_process import OperatorProcess

API_KEY = "e2e-" + secrets.token_hex(8)
SERVED = "telechat-tiny"
NATIVE_CONTEXT = 4096  # seq_length of the tiny checkpoint
MAX_MODEL_LEN = 6144  # above native: allowed only by dynamic rope scaling x3
# vLLM applies the generation config's max_new_tokens as a default and as a cap on requests.
DEFAULT_MAX_TOKENS = 48


@dataclass
class Served:
    namespace: str
    name: str
    base_url: str
    run: Any  # local_node.PodRun


def namespace_for(cluster: Cluster, prefix: str) -> str:
    ns = f"t-{prefix}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns, check=True)
    return ns


def serve(
    cluster: Cluster, local_node: Any, tiny_models: Path, ns: str, name: str, spec: dict[str, Any]
) -> Served:
    apply(cluster, ns, name, spec)
    run = wait_for(lambda: local_node.run_for(ns, name), timeout=120, message="pod started on the local node")
    print(f"\n{name}: substitutions made by the local kubelet:\n{json.dumps(run.substitutions, indent=2)}")
    print(f"{name}: command run:\n{' '.join(run.command)}")
    try:
        wait_condition(cluster, ns, name, "Ready", "True", timeout=420)
    except AssertionError:
        print(run.log_text()[-20000:])
        raise
    return Served(ns, name, f"http://127.0.0.1:{run.port}/v1", run)


def base_spec(local_node: Any, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": "Tele-AI/TeleChat2-7B",
            "servedModelName": SERVED,
            "pvc": {"claimName": "tiny-model", "path": "telechat2"},
        },
        "engine": {
            "dtype": "bfloat16",
            "maxModelLen": MAX_MODEL_LEN,
            "ropeScaling": {"type": "dynamic", "factor": 3.0},
            # A user flag the operator does not own: skips torch.compile warm-up (about 25 s vs 40 s here).
            "extraArgs": ["--enforce-eager"],
        },
        # The guide's defaults, with a small max_tokens so the default is visible in a response.
        "sampling": {"temperature": 0.0, "repetitionPenalty": 1.05, "maxTokens": DEFAULT_MAX_TOKENS},
        "features": {
            "toolCalling": {"enabled": True, "parser": "hermes"},
            "structuredOutputs": {"backend": "xgrammar"},
        },
        "apiKeySecretRef": {"name": "api-key", "key": "key"},
        "scheduling": {"nodeSelector": {"kubernetes.io/hostname": local_node.node_name}},
        "probes": {"startupBudgetSeconds": 600},
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="module")
def served(
    cluster: Cluster, operator: OperatorProcess, local_node: Any, tiny_models: Path
) -> Iterator[Served]:
    ns = namespace_for(cluster, "e2e")
    model_volume(cluster, ns, tiny_models)
    cluster.kubectl(
        "create", "secret", "generic", "api-key", "-n", ns, f"--from-literal=key={API_KEY}", check=True
    )
    try:
        yield serve(cluster, local_node, tiny_models, ns, "tiny", base_spec(local_node))
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        cluster.kubectl("delete", "pv", f"{ns}-tiny-model", "--wait=false")


def client(served: Served) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=served.base_url)


def test_rendered_command_ran_with_only_visible_substitutions(cluster: Cluster, served: Served) -> None:
    dep = get(cluster, served.namespace, "deployment", served.name)
    assert dep is not None
    container = dep["spec"]["template"]["spec"]["containers"][0]
    rendered = [*container["command"], *container["args"]]
    ran = served.run.command
    subs = served.run.substitutions
    # The rendered command, with the image's python and mount paths replaced, then the loopback listen flags.
    expected = [subs.get(f"image {container['image']} ({rendered[0]})", rendered[0])] + [
        part.replace("/etc/telechat", subs["mount /etc/telechat"]) for part in rendered[1:]
    ]
    assert ran[: len(expected)] == expected
    assert ran[len(expected) :] == ["--host", "127.0.0.1", "--port", str(served.run.port)]
    assert set(subs) <= {
        f"image {container['image']} (python3)",
        "listen 0.0.0.0:8000",
        *(f"mount {m['mountPath']}" for m in container["volumeMounts"]),
    }
    # Secrets reach vLLM through the environment only.
    assert served.run.env["VLLM_API_KEY"] == API_KEY
    assert API_KEY not in json.dumps(ran)


def test_status_ready_with_endpoint(cluster: Cluster, served: Served) -> None:
    tcd = get(cluster, served.namespace, "tcd", served.name)
    assert tcd is not None
    assert tcd["status"]["phase"] == "Ready" and tcd["status"]["servedModelName"] == SERVED
    assert condition(tcd, "Ready")["reason"] == "ModelServing"


def test_guide_chat_example(served: Served) -> None:
    # The guide's client code, with its model name replaced by the served name.
    chat_response = client(served).chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": "Tell me something about large language models."}],
        temperature=0.0,
        max_tokens=512,
        extra_body={
            "repetition_penalty": 1.05,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        },
    )
    print("Chat response:", chat_response)
    assert chat_response.choices and chat_response.choices[0].message.role == "assistant"
    assert chat_response.usage is not None
    assert 0 < chat_response.usage.completion_tokens <= DEFAULT_MAX_TOKENS  # the spec's cap applies


def test_default_sampling_from_spec(served: Served) -> None:
    response = client(served).chat.completions.create(
        model=SERVED, messages=[{"role": "user", "content": "Count to one hundred, slowly."}]
    )
    assert response.usage is not None
    # No max_tokens in the request: spec.sampling.maxTokens applies.
    assert response.usage.completion_tokens <= DEFAULT_MAX_TOKENS
    # vLLM logs the defaults it loaded from the --generation-config folder the operator rendered.
    lines = [
        ln
        for ln in served.run.log_text().splitlines()
        if "Default vLLM sampling parameters have been overridden" in ln
    ]
    assert lines, "vLLM did not report default sampling parameters"
    assert "'repetition_penalty': 1.05" in lines[0] and "'temperature': 0.0" in lines[0]
    assert f"'max_tokens': {DEFAULT_MAX_TOKENS}" in lines[0]


def test_tool_calling(served: Served) -> None:
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 12}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                # strict: arguments are constrained to the schema (a random-weight model needs that).
                "strict": True,
            },
        }
    ]
    auto = client(served).chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": "Weather in Beijing?"}],
        tools=tools,
        max_tokens=16,
    )
    assert auto.choices
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        forced = client(served).chat.completions.create(
            model=SERVED,
            messages=[{"role": "user", "content": "Weather in Beijing?"}],
            tools=tools,
            tool_choice=choice,  # type: ignore[call-overload]
            parallel_tool_calls=False,
            max_tokens=128,
        )
        calls = forced.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "get_weather", forced
        assert isinstance(json.loads(calls[0].function.arguments).get("city"), str)


def test_structured_output(served: Served) -> None:
    schema = {
        "type": "object",
        # Bounded fields only: a random-weight model would otherwise emit digits until max_tokens.
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "kind": {"enum": ["llm", "other"]},
            "open": {"type": "boolean"},
        },
        "required": ["name", "kind", "open"],
        "additionalProperties": False,
    }
    response = client(served).chat.completions.create(
        model=SERVED,
        messages=[{"role": "user", "content": "Reply with a JSON object naming a model and its year."}],
        response_format={"type": "json_schema", "json_schema": {"name": "model", "schema": schema}},
        max_tokens=64,
    )
    data = json.loads(response.choices[0].message.content or "")
    jsonschema.validate(data, schema)


def test_rope_scaling_context_above_native(served: Served) -> None:
    models = client(served).models.list()
    (model,) = [m for m in models.data if m.id == SERVED]
    assert getattr(model, "max_model_len", None) == MAX_MODEL_LEN > NATIVE_CONTEXT


def test_endpoints_and_api_key(served: Served) -> None:
    root = served.base_url.removesuffix("/v1")
    assert requests.get(f"{root}/health", timeout=10).status_code == 200
    assert "vllm:" in requests.get(f"{root}/metrics", timeout=10).text
    assert requests.get(f"{served.base_url}/models", timeout=10).status_code == 401
    ok = requests.get(f"{served.base_url}/models", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["data"][0]["id"] == SERVED


@pytest.fixture(scope="module")
def served_115b(
    cluster: Cluster, operator: OperatorProcess, local_node: Any, tiny_models: Path
) -> Iterator[Served]:
    """The 115B layout: architecture TelechatForCausalLM (not registered by vLLM) and no chat template."""
    ns = namespace_for(cluster, "e2e-115b")
    model_volume(cluster, ns, tiny_models)
    cluster.kubectl(
        "create", "secret", "generic", "api-key", "-n", ns, f"--from-literal=key={API_KEY}", check=True
    )
    spec = base_spec(local_node)
    spec["model"] = {
        "name": "TeleChat/TeleChat2-115B",
        "servedModelName": SERVED,
        "pvc": {"claimName": "tiny-model", "path": "115b"},
    }
    # The guide's settings for TeleChat2-115B, with tensor parallel 1 on the one local "GPU".
    spec["engine"] = {**spec["engine"], "dtype": "float16", "tensorParallelSize": 1}
    try:
        yield serve(cluster, local_node, tiny_models, ns, "tc115b", spec)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        cluster.kubectl("delete", "pv", f"{ns}-tiny-model", "--wait=false")


def test_115b_layout_served_with_operator_fixes(cluster: Cluster, served_115b: Served) -> None:
    tcd = get(cluster, served_115b.namespace, "tcd", served_115b.name)
    assert (
        tcd is not None and tcd["status"]["modelId"] == "Tele-AI/TeleChat2-115B"
    )  # the guide's id, resolved
    engine = get(cluster, served_115b.namespace, "configmap", f"{served_115b.name}-engine")
    assert engine is not None and "chat_template.jinja" in engine["data"]
    assert "TeleChat2ForCausalLM" in engine["data"]["vllm.yaml"]
    # Without the architecture override vLLM refuses the checkpoint; without a template, chat answers 400.
    response = client(served_115b).chat.completions.create(
        model=SERVED,
        messages=[
            {"role": "system", "content": "You are TeleChat."},
            {"role": "user", "content": "Tell me something about large language models."},
        ],
        extra_body={
            "repetition_penalty": 1.05,
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        },
    )
    assert response.choices and response.usage is not None and response.usage.completion_tokens > 0
    assert "Casting" in served_115b.run.log_text() or "float16" in served_115b.run.log_text()
