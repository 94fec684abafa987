"""Generate the CRDs in crds/ from the pydantic models, so the schema and the typed spec cannot disagree.

``python -m telechat_operator.crdgen --write`` rewrites crds/ and the Helm chart's copy; ``--check`` exits
non-zero when a committed file differs from what the models produce (run by the unit tests).

Pydantic's JSON Schema is turned into a Kubernetes structural schema: references inlined, ``Optional``
unwrapped, ``int | str`` quantities as int-or-string, numeric exclusive bounds in OpenAPI v3 form, and no
``default`` keywords (defaults are applied by the operator, never stored in the object).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .api import constants as c
from .api.spec import TeleChatDeploymentSpec, cel
from .api.status import TeleChatDeploymentStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIRS = (REPO_ROOT / "crds", REPO_ROOT / "charts" / "telechat-operator" / "crds")

_DROP = {"title", "default", "examples"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _union(node: dict[str, Any]) -> dict[str, Any]:
    """An ``anyOf`` node: an int-or-string quantity, or an optional field (one type besides null)."""
    options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
    types = sorted(o.get("type", "") for o in options)
    if types == ["integer", "string"]:
        # A Kubernetes quantity: 8 or "64Gi".
        pattern = next((o["pattern"] for o in options if o.get("pattern")), None)
        node.update({"x-kubernetes-int-or-string": True})
        if pattern:
            node["pattern"] = pattern
        return node
    if len(options) != 1:
        raise ValueError(f"cannot express a union in a structural schema: {options}")
    inner = _structural(options[0])
    # The outer node's description and validations describe the field; keep them.
    return {**inner, **{k: v for k, v in node.items() if k != "anyOf"}}


def _object(node: dict[str, Any]) -> None:
    node["type"] = "object"
    props = node.get("properties")
    if props:
        node["properties"] = {k: _structural(v) for k, v in props.items()}
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        if extra:
            node["additionalProperties"] = _structural(extra)
        else:
            node.pop("additionalProperties")
    elif extra is False:
        node.pop("additionalProperties")
    if not props and "additionalProperties" not in node:
        # dict[str, Any]: an arbitrary object (affinity, valueFrom, tolerations).
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "required" in node:
        node["required"] = sorted(node["required"])


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Convert one resolved JSON Schema node to a structural OpenAPI v3 schema node."""
    node = {k: v for k, v in node.items() if k not in _DROP}
    if "anyOf" in node:
        return _union(node)
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        _object(node)
    elif kind == "array":
        items = node.get("items") or {}
        node["items"] = (
            _structural(items) if items else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        )
    elif kind is None and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["type"] = "object"
        node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Model", "type": "string", "jsonPath": ".status.modelId"},
        {
            "name": "TP",
            "type": "integer",
            "jsonPath": ".status.tensorParallelSize",
            "description": "Tensor parallel size",
        },
        {
            "name": "GPUs",
            "type": "integer",
            "jsonPath": ".status.gpusPerReplica",
            "description": "GPUs per replica",
        },
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": ".status.ready",
            "description": "Ready/desired replicas",
        },
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


# metadata.name becomes the Service name (a DNS-1035 label) and prefixes children ("-model-cache").
NAME_RULE = cel(
    "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 50",
    "metadata.name must be a DNS-1035 label (lower case letters, digits and '-', starting with a letter) "
    "of at most 50 characters: it names the Service and the other children",
)


def root_schema(
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    *,
    kind_description: str,
    spec_description: str,
    name_rule: dict[str, Any],
) -> dict[str, Any]:
    """The openAPIV3Schema of a kind: spec and status from their models, a CEL rule on metadata.name."""
    spec_schema = openapi_schema(spec_model)
    spec_schema["description"] = spec_description
    status_schema = openapi_schema(status_model)
    status_schema["description"] = "Observed state, written by the operator."
    return {
        "type": "object",
        "description": kind_description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [name_rule],
    }


def deployment_crd() -> dict[str, Any]:
    schema = root_schema(
        TeleChatDeploymentSpec,
        TeleChatDeploymentStatus,
        kind_description="TeleChatDeployment serves a TeleChat2 model with vLLM.",
        spec_description=(
            "A TeleChat2 model served by vLLM: the operator renders a ConfigMap with the engine "
            "configuration, a Deployment of vLLM pods and a Service with an OpenAI-compatible API."
        ),
        name_rule=NAME_RULE,
    )
    return _crd(
        plural=c.PLURAL,
        singular=c.SINGULAR,
        kind=c.KIND,
        short_names=c.SHORT_NAMES,
        schema=schema,
        columns=_printer_columns(),
        scale=True,
    )


def _crd(
    *,
    plural: str,
    singular: str,
    kind: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    scale: bool,
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{c.GROUP}",
            "labels": {c.LABEL_PART_OF: c.APP_NAME},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": singular,
                "kind": kind,
                "shortNames": short_names,
                "categories": ["telechat", "all"],
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


# A TeleChatBatchJob's name prefixes its Job and ConfigMap ("-batch-config"); the Job's name is a label value.
BATCH_NAME_RULE = cel(
    "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 50",
    "metadata.name must be a DNS-1123 label (lower case letters, digits and '-') of at most 50 characters: "
    "it names the Job and the ConfigMap",
)


def batch_crd() -> dict[str, Any]:
    from .batch.spec import TeleChatBatchJobSpec
    from .batch.status import TeleChatBatchJobStatus

    schema = root_schema(
        TeleChatBatchJobSpec,
        TeleChatBatchJobStatus,
        kind_description="TeleChatBatchJob runs offline batch inference with a TeleChat2 model on vLLM.",
        spec_description=(
            "An OpenAI batch file (JSONL) run through a TeleChat2 model by vLLM's batch mode: the operator "
            "checks input and output, then renders a ConfigMap and an Indexed Job whose pods write the "
            "results."
        ),
        name_rule=BATCH_NAME_RULE,
    )
    columns = [
        {"name": "Model", "type": "string", "jsonPath": ".status.modelId"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Done",
            "type": "string",
            "jsonPath": ".status.progress",
            "description": "Requests finished (answered or failed) / requests in the input",
        },
        {
            "name": "Failed",
            "type": "integer",
            "jsonPath": ".status.requests.failed",
            "description": "Requests with an error line in the output",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd(
        plural=c.BATCH_PLURAL,
        singular=c.BATCH_SINGULAR,
        kind=c.BATCH_KIND,
        short_names=c.BATCH_SHORT_NAMES,
        schema=schema,
        columns=columns,
        scale=False,
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every CRD the operator serves."""
    return {
        f"{c.GROUP}_{c.PLURAL}.yaml": deployment_crd(),
        f"{c.GROUP}_{c.BATCH_PLURAL}.yaml": batch_crd(),
    }


HEADER = "# Generated by `make crds` from operator/telechat_operator/api; do not edit by hand.\n"


def dump(crd: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the CRD files")
    parser.add_argument("--check", action="store_true", help="fail when a CRD file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for directory in CRD_DIRS:
        for filename, crd in all_crds().items():
            path = directory / filename
            text = dump(crd)
            if args.write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            elif not path.exists() or path.read_text() != text:
                stale.append(str(path))
    if stale:
        print("out of date (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    if not args.write:
        print("CRDs are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
