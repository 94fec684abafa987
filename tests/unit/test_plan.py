"""Planning: only objects that differ from the cluster are applied."""

from __future__ import annotations

import copy
from typing import Any

from telechat_operator.controller.plan import is_subset, plan


def cm(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "n"},
        "data": data,
    }


def with_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].update({"uid": "u", "resourceVersion": "7", "creationTimestamp": "t"})
    return out


def test_unchanged_objects_are_not_applied() -> None:
    desired = [cm("a", {"k": "v"})]
    assert plan(desired, {("ConfigMap", "a"): with_server_fields(desired[0])}).empty


def test_missing_or_drifted_objects_are_applied() -> None:
    desired = [cm("a", {"k": "v"}), cm("b", {"k": "v"})]
    drifted = with_server_fields(cm("b", {"k": "edited by hand"}))
    result = plan(desired, {("ConfigMap", "b"): drifted})
    assert [o["metadata"]["name"] for o in result.apply] == ["a", "b"]


def test_objects_no_longer_rendered_are_deleted() -> None:
    result = plan([cm("a", {})], {("ConfigMap", "a"): cm("a", {}), ("PersistentVolumeClaim", "old"): {}})
    assert result.delete == [("PersistentVolumeClaim", "old")]


def test_subset_rules() -> None:
    assert is_subset({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not is_subset({"a": [1]}, {"a": [1, 2]})  # a removed list item is drift
    assert not is_subset({"a": {"b": 1}}, {"a": {}})
    assert is_subset({"x": 1}, {"x": 1.0})
    assert not is_subset({"x": "1"}, {"x": 1})
