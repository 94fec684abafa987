"""The TeleChatBatchJob CRD is generated from the pydantic spec and status; the two must agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

# The structural walk and the OpenAPI -> JSON Schema mapping are the TeleChatDeployment CRD test's own.
from tests.unit.test_crd import _openapi_to_jsonschema, _walk_fields

from telechat_operator.api import constants as c
from telechat_operator.api.spec import ModelEngineSpec, TeleChatDeploymentSpec
from telechat_operator.batch.spec import TeleChatBatchJobSpec
from telechat_operator.batch.status import TeleChatBatchJobStatus
from telechat_operator.crdgen import all_crds
from telechat_operator.validation import SpecError, parse_as

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / f"{c.GROUP}_{c.BATCH_PLURAL}.yaml"


def crd() -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return result


def schema() -> dict[str, Any]:
    result: dict[str, Any] = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def test_committed_file_is_what_crdgen_generates() -> None:
    assert crd() == all_crds()[CRD_FILE.name]


def test_names_columns_and_subresources() -> None:
    spec = crd()["spec"]
    assert spec["names"]["kind"] == "TeleChatBatchJob"
    assert spec["names"]["shortNames"] == ["tcb"]
    assert spec["group"] == "telechat.ai" and spec["scope"] == "Namespaced"
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {col["name"]: col["jsonPath"] for col in version["additionalPrinterColumns"]}
    assert columns == {
        "Model": ".status.modelId",
        "Phase": ".status.phase",
        "Done": ".status.progress",
        "Failed": ".status.requests.failed",
        "Age": ".metadata.creationTimestamp",
    }
    assert "default:" not in CRD_FILE.read_text()


def test_every_field_is_in_the_crd_and_back() -> None:
    props = schema()["properties"]
    assert _walk_fields(TeleChatBatchJobSpec, props["spec"], "spec") == []
    assert _walk_fields(TeleChatBatchJobStatus, props["status"], "status") == []


def test_the_shared_part_has_the_same_schema_in_both_crds() -> None:
    deployment = all_crds()[f"{c.GROUP}_{c.PLURAL}.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for field in ModelEngineSpec.model_fields.values():
        alias = field.alias
        assert alias is not None
        batch_field = schema()["properties"]["spec"]["properties"][alias]
        assert batch_field == deployment["properties"]["spec"]["properties"][alias], alias
    assert set(TeleChatDeploymentSpec.model_fields) - set(TeleChatBatchJobSpec.model_fields) == {
        "replicas",
        "service",
        "api_key_secret_ref",
        "probes",
    }


IO = {
    "input": {"configMap": {"name": "prompts", "key": "requests.jsonl"}},
    "output": {"pvc": {"claimName": "results", "path": "out.jsonl"}},
}
MODEL = {"model": {"name": "Tele-AI/TeleChat2-7B"}}

SAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("minimal", {**MODEL, **IO}),
    ("pvc-input", {**MODEL, **IO, "input": {"pvc": {"claimName": "data", "path": "in/a.jsonl"}}}),
    ("no-input", {**MODEL, "output": IO["output"]}),
    ("no-output", {**MODEL, "input": IO["input"]}),
    ("output-without-path", {**MODEL, **IO, "output": {"pvc": {"claimName": "r"}}}),
    ("path-dotdot", {**MODEL, **IO, "output": {"pvc": {"claimName": "r", "path": "../x.jsonl"}}}),
    ("path-absolute", {**MODEL, **IO, "output": {"pvc": {"claimName": "r", "path": "/x.jsonl"}}}),
    ("path-folder", {**MODEL, **IO, "output": {"pvc": {"claimName": "r", "path": "out/"}}}),
    ("path-nested", {**MODEL, **IO, "output": {"pvc": {"claimName": "r", "path": "a/b/c.jsonl"}}}),
    ("bad-claim-name", {**MODEL, **IO, "output": {"pvc": {"claimName": "Results", "path": "x"}}}),
    ("bad-key", {**MODEL, **IO, "input": {"configMap": {"name": "p", "key": "a/b"}}}),
    ("parallelism-0", {**MODEL, **IO, "parallelism": 0}),
    ("parallelism-64", {**MODEL, **IO, "parallelism": 64}),
    ("parallelism-65", {**MODEL, **IO, "parallelism": 65}),
    ("backoff-21", {**MODEL, **IO, "backoffLimit": 21}),
    ("ttl-0", {**MODEL, **IO, "ttlSecondsAfterFinished": 0}),
    ("deadline-0", {**MODEL, **IO, "activeDeadlineSeconds": 0}),
    ("replicas-is-serving-only", {**MODEL, **IO, "replicas": 2}),
    ("service-is-serving-only", {**MODEL, **IO, "service": {"port": 8000}}),
    ("shared-engine", {**MODEL, **IO, "engine": {"tensorParallelSize": 2, "dtype": "bfloat16"}}),
    ("shared-engine-bad", {**MODEL, **IO, "engine": {"dtype": "float64"}}),
]


@pytest.mark.parametrize(("case", "sample"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_schema_and_pydantic_agree(case: str, sample: dict[str, Any]) -> None:
    """Structural checks: the API server and the operator accept and refuse the same batch specs."""
    validator = jsonschema.Draft4Validator(_openapi_to_jsonschema(schema()["properties"]["spec"]))
    schema_ok = validator.is_valid(sample)
    try:
        parse_as(TeleChatBatchJobSpec, sample)
        pydantic_ok = True
    except SpecError:
        pydantic_ok = False
    assert schema_ok == pydantic_ok, (schema_ok, pydantic_ok, list(validator.iter_errors(sample)))


def test_exactly_one_input_source() -> None:
    """Structurally {} and both sources pass; the CEL rule (run by the API server: integration tests)
    and the pydantic validator refuse them."""
    both = {**MODEL, **IO, "input": {**IO["input"], "pvc": {"claimName": "d", "path": "a"}}}
    for sample in ({**MODEL, **IO, "input": {}}, both):
        with pytest.raises(SpecError, match=r"set exactly one of input\.configMap, input\.pvc"):
            parse_as(TeleChatBatchJobSpec, sample)
    rules = schema()["properties"]["spec"]["properties"]["input"]["x-kubernetes-validations"]
    assert rules == [
        {
            "rule": "has(self.configMap) != has(self.pvc)",
            "message": "set exactly one of input.configMap, input.pvc",
        }
    ]


def test_defaults() -> None:
    spec = parse_as(TeleChatBatchJobSpec, {**MODEL, **IO})
    assert (spec.parallelism, spec.backoff_limit) == (1, 1)
    assert spec.active_deadline_seconds is None and spec.ttl_seconds_after_finished is None
    assert spec.pod_count() == 1 and spec.startup_budget_override() is None
