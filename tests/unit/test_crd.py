"""The CRD's schema is generated from the pydantic spec; these tests keep the two in agreement."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from telechat_operator import crdgen
from telechat_operator.api.spec import TeleChatDeploymentSpec
from telechat_operator.validation import SpecError, parse_as

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "telechat.ai_telechatdeployments.yaml"


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_committed_crds_are_current() -> None:
    assert crdgen.main(["--check"]) == 0


def test_crd_has_no_defaults() -> None:
    # Defaults written into stored objects would make GitOps tools see a perpetual diff.
    assert "default:" not in CRD_FILE.read_text()


def _walk_annotation(annotation: Any, schema: dict[str, Any], path: str) -> list[str]:
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return _walk_annotation(item, schema.get("items", {}), f"{path}[]")
    if origin is not None:  # Optional[X], Annotated[X, ...], unions
        return [m for arg in typing.get_args(annotation) for m in _walk_annotation(arg, schema, path)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _walk_fields(annotation, schema, path)
    return []


def _walk_fields(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias not in props:
            missing.append(f"{path}.{alias}")
            continue
        missing += _walk_annotation(field.annotation, props[alias], f"{path}.{alias}")
    extra = set(props) - {f.alias or n for n, f in model.model_fields.items()}
    return missing + [f"{path}.{e} (only in CRD)" for e in sorted(extra)]


def test_every_pydantic_field_is_in_the_crd_and_back() -> None:
    assert _walk_fields(TeleChatDeploymentSpec, crd_spec_schema(), "spec") == []


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI v3.0 (boolean exclusive bounds) maps onto JSON Schema draft 4; drop Kubernetes extensions."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("pattern", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string", "pattern": node.get("pattern", "")}]
    if (
        node.get("type") == "object"
        and "properties" in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


SAMPLES: list[dict[str, Any]] = [
    {"model": {"name": "Tele-AI/TeleChat2-115B"}},
    {"model": {"name": "Tele-AI/TeleChat2-115B"}, "engine": {"tensorParallelSize": 0}},
    {"model": {"name": "x"}, "engine": {"dtype": "float64"}},
    {"model": {"name": "x"}, "engine": {"gpuMemoryUtilization": 0}},
    {"model": {"name": "x"}, "engine": {"gpuMemoryUtilization": 0.9}},
    {"model": {"name": "x"}, "engine": {"ropeScaling": {"type": "dynamic", "factor": 1}}},
    {"model": {"name": "x"}, "engine": {"ropeScaling": {"type": "yarn", "factor": 4, "ropeTheta": 1e6}}},
    {"model": {"name": "x"}, "resources": {"cpu": 8, "memory": "64Gi"}},
    {"model": {"name": "x"}, "resources": {"memory": "64 GiB"}},
    {"model": {"name": "x"}, "replicas": 65},
    {"model": {"name": "x"}, "service": {"port": 70000}},
    {"model": {"name": "x"}, "sampling": {"topP": 0}},
    {"model": {"name": "x"}, "sampling": {"topK": -1, "temperature": 0}},
    {"model": {"name": "x"}, "scheduling": {"tolerations": [{"key": "a", "operator": "Exists"}]}},
    {"model": {"name": "x"}, "modle": {}},
    {"model": {"name": "bad name with spaces"}},
    {
        "model": {"name": "x"},
        "engine": {"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
    },
]


@pytest.mark.parametrize("sample", SAMPLES, ids=[str(i) for i in range(len(SAMPLES))])
def test_schema_and_pydantic_agree(sample: dict[str, Any]) -> None:
    """Structural checks: the API server and the operator accept and refuse the same specs."""
    validator = jsonschema.Draft4Validator(_openapi_to_jsonschema(crd_spec_schema()))
    schema_ok = validator.is_valid(sample)
    try:
        parse_as(TeleChatDeploymentSpec, sample)
        pydantic_ok = True
    except SpecError:
        pydantic_ok = False
    assert schema_ok == pydantic_ok, (schema_ok, pydantic_ok, list(validator.iter_errors(sample)))
