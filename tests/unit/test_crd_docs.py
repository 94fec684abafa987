"""docs/crd-reference.md is generated from the CRD schemas and must be current."""

from __future__ import annotations

from telechat_operator import docgen
from telechat_operator.crdgen import all_crds


def test_crd_reference_is_current() -> None:
    assert docgen.DOC_PATH.read_text() == docgen.render(), (
        "docs/crd-reference.md is out of date: run `.venv/bin/python -m telechat_operator.docgen --write`"
    )


def test_every_schema_field_is_documented() -> None:
    text = docgen.render()

    def paths(node: dict[str, object], path: str) -> list[str]:
        out = [path]
        props = node.get("properties")
        if isinstance(props, dict):
            for name, child in props.items():
                out += paths(child, f"{path}.{name}")
        items = node.get("items")
        if isinstance(items, dict) and isinstance(items.get("properties"), dict):
            for name, child in items["properties"].items():
                out += paths(child, f"{path}[].{name}")
        return out

    for crd in all_crds().values():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for section in ("spec", "status"):
            for path in paths(schema["properties"][section], section):
                assert f"| `{path}` |" in text, path


def test_validation_and_rules_appear() -> None:
    text = docgen.render()
    assert "| `spec.model.name` | string |" in text
    assert "**required**" in text
    assert "one of `auto`, `float16`, `bfloat16`, `float32`" in text
    assert "rule `!(has(self.pvc) && has(self.cache))`" in text
