"""The shape of a GPU benchmark results file (what CI checks: it has no GPU, so only the schema).

A check returns the problems found, as paths into the file; an empty list means the file is usable by
``report``. Kept by hand rather than with a schema library: the driver on the device has only the stdlib.
"""

from __future__ import annotations

from typing import Any

SCHEMA = "telechat-operator/gpu-bench/v1"
_CASE_KEYS = {
    "name": str,
    "model_id": str,
    "served_model_name": str,
    "vllm_options": dict,
    "command": list,
    "args": list,
    "env": list,
    "files": dict,
    "config_dir": str,
    "hf_home": str,
    "device_env": dict,
    "changes": list,
    "shape": dict,
    "checkpoint": dict,
    "startup_probe": dict,
}
_LEVEL_KEYS = {
    "concurrency": int,
    "requests": int,
    "completed": int,
    "errors": int,
    "wall_s": (int, float),
    "output_tokens_per_s": (int, float),
    "requests_per_s": (int, float),
    "ttft_ms": dict,
    "tpot_ms": dict,
    "itl_ms": dict,
}


_SMI_KEYS = ("name", "driver_version", "memory.total")


def _need(obj: Any, keys: dict[str, Any], where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: not an object"]
    problems = []
    for key, kind in keys.items():
        if key not in obj:
            problems.append(f"{where}.{key}: missing")
        elif not isinstance(obj[key], kind) or (isinstance(obj[key], bool) and kind is int):
            problems.append(f"{where}.{key}: {type(obj[key]).__name__}, expected {kind}")
    return problems


def _facts(facts: Any) -> list[str]:
    problems = _need(facts, {"nvidia_smi": dict, "versions": dict}, "$.facts")
    if problems:
        return problems
    problems += [f"$.facts.nvidia_smi.{k}: missing" for k in _SMI_KEYS if k not in facts["nvidia_smi"]]
    if "vllm" not in facts["versions"]:
        problems.append("$.facts.versions.vllm: missing")
    return problems


def _serve_step(step: dict[str, Any], cases: dict[str, Any], where: str) -> list[str]:
    problems = _need(step, {"case": str, "startup": dict, "stop": dict}, where)
    if step.get("case") not in cases:
        problems.append(f"{where}.case: {step.get('case')!r} is not in $.cases")
    for j, level in enumerate(step.get("load") or []):
        if "skipped" not in level:
            problems += _need(level, _LEVEL_KEYS, f"{where}.load[{j}]")
    for probe, value in (step.get("probes") or {}).items():
        if "status" in value:  # a probe that raised has only "error"
            problems += _need(value, {"status": int}, f"{where}.probes.{probe}")
    return problems


def _step(step: Any, cases: dict[str, Any], where: str) -> list[str]:
    problems = _need(step, {"step": str}, where)
    if problems or "skipped" in step or ("error" in step and "kind" not in step):
        return problems
    if step.get("kind") not in ("checkpoint", "serve"):
        return [f"{where}.kind: {step.get('kind')!r}"]
    return _serve_step(step, cases, where) if step["kind"] == "serve" else []


def check(results: Any) -> list[str]:
    problems = _need(results, {"schema": str, "plan": str, "facts": dict, "cases": dict, "steps": list}, "$")
    if problems:
        return problems
    if results["schema"] != SCHEMA:
        problems.append(f"$.schema: {results['schema']!r}, expected {SCHEMA!r}")
    problems += _facts(results["facts"])
    for name, case in results["cases"].items():
        problems += _need(case, _CASE_KEYS, f"$.cases.{name}")
    for i, step in enumerate(results["steps"]):
        problems += _step(step, results["cases"], f"$.steps[{i}]")
    return problems
