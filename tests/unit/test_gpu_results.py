"""The committed GPU benchmark results have the shape bench.gpu.report reads (CI has no GPU)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from bench.gpu import schema

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "gpu"
FILES = sorted(RESULTS.glob("results-*.json"))


def test_results_are_committed() -> None:
    assert FILES, f"no results-*.json in {RESULTS}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_results_match_schema(path: Path) -> None:
    assert schema.check(json.loads(path.read_text())) == []


def test_schema_reports_what_is_missing() -> None:
    good = json.loads(FILES[0].read_text())
    bad = copy.deepcopy(good)
    del bad["facts"]["nvidia_smi"]["driver_version"]
    serve = next(s for s in bad["steps"] if s.get("kind") == "serve" and s.get("load"))
    del serve["load"][0]["ttft_ms"]
    problems = schema.check(bad)
    assert "$.facts.nvidia_smi.driver_version: missing" in problems
    assert any(p.endswith(".load[0].ttft_ms: missing") for p in problems)
    assert schema.check({"schema": "x"})[0] == "$.plan: missing"
