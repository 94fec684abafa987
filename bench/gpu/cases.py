"""Render a TeleChatDeployment with the operator's own code into a case the device runs as a pod would.

  python -m bench.gpu.cases examples/telechat2-7b.yaml --name 7b-defaults [--extra-arg=--flag=value ...]

The rendering goes through ``telechat-operator render`` (``cli.render_documents``), so the case holds what
the operator would apply: the container's command and args, its env, the ConfigMap files and where they
are mounted, the model cache mount (HF_HOME) and the startup probe. Device-side differences are explicit:
``device_env`` (added variables) and ``changes`` (one sentence per difference), both copied into the
results. With ``--operator-src DIR`` another checkout's operator renders it (the pre-fix rendering).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

# Added on the device, and why; nothing else in the environment differs from the rendered pod's.
DEVICE_ENV = {
    # No registry or hub is reachable from the device; the checkpoint is already in the model cache.
    "HF_HUB_OFFLINE": "1",
    # The carried vLLM leaves FlashInfer out (size); vLLM then samples with its own PyTorch kernels.
    "VLLM_USE_FLASHINFER_SAMPLER": "0",
    # Each log line is stamped when it arrives; buffered stdout would blur the stage times.
    "PYTHONUNBUFFERED": "1",
}
DEVICE_CHANGES = [
    "environment: the device image's own variables underneath the rendered env (a pod gets the vLLM "
    "image's); PYTHONPATH names the carried vLLM",
    "environment: HF_HUB_OFFLINE=1 (no hub reachable; the checkpoint is in the model cache under the "
    "rendered model id)",
    "environment: VLLM_USE_FLASHINFER_SAMPLER=0 (FlashInfer is not carried) and PYTHONUNBUFFERED=1 (log "
    "stamps)",
    "process: runs as root with a writable root filesystem (the pod: uid 1000, read-only root, /tmp and "
    "/model-cache volumes); /tmp is emptied before each start like a new pod's emptyDir",
    "weights: random values at the catalog shape, written into the model cache (HF_HOME) as a download "
    "would leave them; tokenizer: the tiny test BPE padded to the model's vocabulary",
]


def _import_operator(operator_src: Path | None) -> Any:
    if operator_src is not None:
        sys.path.insert(0, str(operator_src))
    import telechat_operator
    from telechat_operator import cli
    from telechat_operator.config import OperatorConfig

    if operator_src is not None and not Path(telechat_operator.__file__).is_relative_to(operator_src):
        raise RuntimeError(f"telechat_operator came from {telechat_operator.__file__}, not {operator_src}")
    return cli, OperatorConfig


def _catalog_shape(model_id: str) -> dict[str, Any]:
    from telechat_operator.catalog import resolve_model

    shape = resolve_model(model_id).shape
    if shape is None:
        raise ValueError(f"{model_id} is not in the catalog; the bench needs its shape")
    fields = [
        "model_id", "hidden_size", "layers", "heads", "kv_heads", "ffn_hidden_size", "vocab_size",
        "native_context", "rope_theta", "params_billion", "architecture", "ships_chat_template",
        "stored_dtype",
    ]  # fmt: skip
    out = {f: getattr(shape, f) for f in fields}
    out["trained_context"] = getattr(shape, "trained_context", shape.native_context)
    return out


def render_case(
    manifest: Path,
    name: str,
    extra_args: list[str],
    vllm_yaml_changes: dict[str, Any],
    checkpoint_layers: int | None,
    operator_src: Path | None = None,
) -> dict[str, Any]:
    cli, operator_config = _import_operator(operator_src)
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    tcd = next(d for d in docs if d.get("kind") == "TeleChatDeployment")
    if extra_args:
        tcd["spec"].setdefault("engine", {}).setdefault("extraArgs", []).extend(extra_args)
    text, warnings = cli.render_documents([tcd], operator_config(), "default")
    objects = [o for o in yaml.safe_load_all(text) if o]
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_volume = next(v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name"))
    env = [v for v in container["env"] if "value" in v]
    files = dict(configmap["data"])
    options = yaml.safe_load(files["vllm.yaml"])
    changes = list(DEVICE_CHANGES)
    if vllm_yaml_changes:
        for key, value in vllm_yaml_changes.items():
            changes.append(f"vllm.yaml: {key} {options.get(key)!r} -> {value!r}")
            options[key] = value
        files["vllm.yaml"] = yaml.safe_dump(options, sort_keys=False)
    shape = _catalog_shape(tcd["spec"]["model"]["name"])
    layers = checkpoint_layers or shape["layers"]
    if layers != shape["layers"]:
        changes.append(f"checkpoint: {layers} of {shape['layers']} layers at full width (one GPU)")
    probe = container.get("startupProbe", {})
    return {
        "name": name,
        "manifest": str(manifest),
        "operator_src": str(operator_src) if operator_src else None,
        "extra_args": extra_args,
        "render_warnings": warnings,
        "model_id": options["model"],
        "served_model_name": options.get("served-model-name", options["model"]),
        "max_model_len": options.get("max-model-len"),
        "vllm_options": options,
        "command": container["command"],
        "args": container["args"],
        "env": env,
        "env_from_secrets": [v["name"] for v in container["env"] if "valueFrom" in v],
        "config_dir": mounts[config_volume],
        "files": files,
        "hf_home": next(v["value"] for v in env if v["name"] == "HF_HOME"),
        "device_env": DEVICE_ENV,
        "changes": changes,
        "shape": shape,
        "checkpoint": {"layers": layers, "dtype": shape["stored_dtype"]},
        "startup_probe": {
            "periodSeconds": probe.get("periodSeconds"),
            "failureThreshold": probe.get("failureThreshold"),
            "budget_s": (probe.get("periodSeconds") or 0) * (probe.get("failureThreshold") or 0),
        },
        "resources": container.get("resources"),
        "shm_size": next(
            (v["emptyDir"].get("sizeLimit") for v in pod["volumes"] if v["name"] == "dshm"), None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--extra-arg", action="append", default=[], help="appended to spec.engine.extraArgs")
    ap.add_argument("--set", action="append", default=[], help="vllm.yaml KEY=YAML_VALUE changed on device")
    ap.add_argument("--layers", type=int, help="checkpoint depth (default: the catalog's)")
    ap.add_argument("--operator-src", type=Path, help="render with the operator package in this folder")
    args = ap.parse_args(argv)
    changes = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    case = render_case(args.manifest, args.name, args.extra_arg, changes, args.layers, args.operator_src)
    json.dump(case, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
