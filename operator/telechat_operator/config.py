"""Operator configuration: defaults that are the platform team's choice, not each user's.

Read from a YAML file (the Helm chart mounts its ConfigMap there) named by ``TELECHAT_OPERATOR_CONFIG``,
then individual ``TELECHAT_*`` environment variables override single values. Everything has a default so
the operator also runs with no configuration at all (tests, ``telechat-operator render``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

# vLLM's OpenAI server image, pinned. 0.33 is the GPU build the facts were read from; it registers
# TeleChat2ForCausalLM and takes rope scaling via hf_overrides.
DEFAULT_VLLM_IMAGE = "docker.io/vllm/vllm-openai:v0.33.0"


class ProbeBudgets(BaseModel):
    """How the default startup budget is derived from the model's size (seconds)."""

    model_config = ConfigDict(extra="forbid")

    download_base_seconds: int = Field(600, ge=60)
    # Downloading stored weights: 10 s per GB is ~100 MB/s, a cautious figure for the Hugging Face hub.
    download_seconds_per_gb: float = Field(10.0, ge=0)
    load_base_seconds: int = Field(300, ge=60)
    # Reading weights from a volume into GPU memory.
    load_seconds_per_gb: float = Field(3.0, ge=0)
    # When the model is not in the catalog its size is unknown.
    unknown_model_seconds: int = Field(3600, ge=60)


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vllm_image: str = DEFAULT_VLLM_IMAGE
    image_pull_policy: str = "IfNotPresent"
    probe_budgets: ProbeBudgets = Field(default_factory=ProbeBudgets)
    # Seconds between full resyncs of every resource (drift repair for changes no watch reports).
    resync_seconds: float = Field(60.0, gt=0)
    # Concurrent reconciles.
    workers: int = Field(8, ge=1, le=256)
    # Namespaces to watch; empty means the whole cluster.
    namespaces: list[str] = Field(default_factory=list)
    # Check GPU capacity of nodes (needs list/watch on nodes: cluster-wide mode only).
    watch_nodes: bool = True

    @classmethod
    def load(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if environ is None else environ)
        data: dict[str, Any] = {}
        path = env.get("TELECHAT_OPERATOR_CONFIG")
        if path:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: operator configuration must be a mapping")
            data.update(loaded)
        overrides = {
            "TELECHAT_VLLM_IMAGE": "vllm_image",
            "TELECHAT_RESYNC_SECONDS": "resync_seconds",
            "TELECHAT_WORKERS": "workers",
        }
        for var, key in overrides.items():
            if env.get(var):
                data[key] = env[var]
        if env.get("TELECHAT_NAMESPACES"):
            data["namespaces"] = [n for n in env["TELECHAT_NAMESPACES"].split(",") if n]
        return cls.model_validate(data)
