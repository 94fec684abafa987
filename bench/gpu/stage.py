"""Stage a device run: render the cases, write the plans, copy the device-side modules.

  python -m bench.gpu.stage --out /work/main/.gpu [--old-operator-src /tmp/op-old/operator]

Device calls send only the session's checkout (/work/main) plus ignored folders named in ``carry``; the
output folder must be such a folder there. It receives ``bench/gpu/*.py`` (device side), the tiny
generator and chat template, and one ``plan-NAME.json`` per device call. The vLLM payload
(``payload.sh``) is built into the same folder separately.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.gpu import planner_check

REPO = Path(__file__).resolve().parents[2]
DEVICE_MODULES = ("__init__.py", "checkpoint.py", "device.py", "load.py", "probes.py", "vllm_log.py")

# Hand-tuned variants, given to the operator as spec.engine.extraArgs (its own mechanism for such flags).
TUNED: dict[str, list[str]] = {
    # Scheduler budget and no prefix-cache bookkeeping (random prompts never hit), and one streamed chunk
    # per 4 tokens: at 256 streams the single API-server process emits ~10k events/s otherwise.
    "7b-tuned-a": ["--max-num-batched-tokens=16384", "--no-enable-prefix-caching", "--stream-interval=4"],
    # A small prefill chunk: decode steps stall less behind prefills (inter-token p99), at some throughput.
    "7b-tuned-b": ["--max-num-batched-tokens=2048"],
}
LOAD_LEVELS = [
    {"concurrency": 1, "requests": 8, "needs_s": 15},
    {"concurrency": 16, "requests": 64, "needs_s": 15},
    {"concurrency": 64, "requests": 192, "needs_s": 20},
    {"concurrency": 256, "requests": 512, "needs_s": 30},
]


def _case(manifest: str, name: str, *options: str, operator_src: Path | None = None) -> dict[str, Any]:
    """Render one case in a subprocess, so that another checkout's operator can be imported cleanly."""
    cmd = [sys.executable, "-m", "bench.gpu.cases", str(REPO / manifest), "--name", name, *options]
    if operator_src is not None:
        cmd += ["--operator-src", str(operator_src)]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
    case: dict[str, Any] = json.loads(text)
    case["manifest"] = manifest
    case["planner"] = planner_check.predict(case)
    return case


def build_plans(old_operator_src: Path | None) -> dict[str, dict[str, Any]]:
    seven = "examples/telechat2-7b.yaml"
    big = "examples/telechat-115b.yaml"
    cases = {
        "7b-defaults": _case(seven, "7b-defaults"),
        **{name: _case(seven, name, *(f"--extra-arg={a}" for a in args)) for name, args in TUNED.items()},
        # The 115B's width and GQA at 4 of 96 layers: tensor parallel 4 -> 1 for one GPU.
        "115b-layout": _case(big, "115b-layout", "--set", "tensor-parallel-size=1", "--layers", "4"),
    }
    if old_operator_src is not None:
        cases["7b-old-render"] = _case(seven, "7b-old-render", operator_src=old_operator_src)
    seven_len = cases["7b-defaults"]["max_model_len"] or cases["7b-defaults"]["shape"]["native_context"]
    big_len = cases["115b-layout"]["max_model_len"]
    first: dict[str, Any] = {
        "name": "7b",
        "steps": [
            {"kind": "checkpoint", "label": "checkpoint-7b", "case": "7b-defaults", "needs_s": 60},
            {
                "kind": "serve",
                "label": "7b-defaults",
                "case": "7b-defaults",
                "clear_compile_cache": True,
                "needs_s": 200,
                "probes": ["models", "guide_chat", "tool_call", "long:12000", f"long:{seven_len - 64}"],
                "load": LOAD_LEVELS,
            },
            {
                "kind": "serve",
                "label": "7b-defaults-restart",
                "case": "7b-defaults",
                "needs_s": 110,
                "probes": ["guide_chat"],
            },
            {
                "kind": "serve",
                "label": "7b-tuned-a",
                "case": "7b-tuned-a",
                "needs_s": 180,
                "load": LOAD_LEVELS,
            },
            # Only if the call has time left (the driver skips a step that does not fit).
            {
                "kind": "serve",
                "label": "7b-tuned-b",
                "case": "7b-tuned-b",
                "needs_s": 170,
                "load": LOAD_LEVELS,
            },
        ],
    }
    second_steps: list[dict[str, Any]] = [
        {"kind": "checkpoint", "label": "checkpoint-115b-layout", "case": "115b-layout", "needs_s": 80},
        {
            "kind": "serve",
            "label": "115b-layout",
            "case": "115b-layout",
            "clear_compile_cache": True,
            "needs_s": 160,
            "probes": ["models", "guide_chat", "tool_call", "long:20000", f"long:{big_len - 64}"],
            "load": [{"concurrency": 16, "requests": 64, "needs_s": 20}],
        },
        {"kind": "checkpoint", "label": "checkpoint-7b", "case": "7b-defaults", "needs_s": 60},
    ]
    if old_operator_src is not None:
        second_steps.append(
            {
                "kind": "serve",
                "label": "7b-old-render",
                "case": "7b-old-render",
                "needs_s": 140,
                "probes": ["guide_chat", "long:12000"],
            }
        )
    second_steps.append(
        {"kind": "serve", "label": "7b-tuned-b", "case": "7b-tuned-b", "needs_s": 170, "load": LOAD_LEVELS}
    )
    # Run-to-run spread of the defaults, if the call has time left.
    second_steps.append(
        {
            "kind": "serve",
            "label": "7b-defaults-repeat",
            "case": "7b-defaults",
            "needs_s": 160,
            "load": LOAD_LEVELS,
        }
    )
    second: dict[str, Any] = {"name": "115b", "steps": second_steps}
    # Run-to-run spread of the defaults, and what the compile cache alone saves on a warm machine.
    third: dict[str, Any] = {
        "name": "7b-repeat",
        "steps": [
            {"kind": "checkpoint", "label": "checkpoint-7b", "case": "7b-defaults", "needs_s": 60},
            {
                "kind": "serve",
                "label": "7b-defaults-repeat",
                "case": "7b-defaults",
                "clear_compile_cache": True,
                "needs_s": 170,
                "load": LOAD_LEVELS,
            },
            {
                "kind": "serve",
                "label": "7b-restart-no-compile-cache",
                "case": "7b-defaults",
                "clear_compile_cache": True,
                "needs_s": 100,
            },
            {"kind": "serve", "label": "7b-restart-compile-cache", "case": "7b-defaults", "needs_s": 70},
        ],
    }
    for plan in (first, second, third):
        used = {s["case"] for s in plan["steps"]}
        plan["cases"] = {k: v for k, v in cases.items() if k in used}
    return {"7b": first, "115b": second, "7b-repeat": third}


def stage(out: Path, old_operator_src: Path | None) -> list[Path]:
    target = out / "bench" / "gpu"
    target.mkdir(parents=True, exist_ok=True)
    (out / "bench" / "__init__.py").write_text("")
    for module in DEVICE_MODULES:
        shutil.copy2(REPO / "bench" / "gpu" / module, target / module)
    shutil.copy2(REPO / "tests" / "e2e" / "tiny_telechat.py", target / "tiny_telechat.py")
    shutil.copy2(REPO / "operator" / "telechat_operator" / "templates" / "telechat.jinja", target)
    written = []
    for name, plan in build_plans(old_operator_src).items():
        path = out / f"plan-{name}.json"
        path.write_text(json.dumps(plan, indent=1))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--old-operator-src", type=Path, help="operator/ of the pre-fix commit, for contrast")
    args = ap.parse_args(argv)
    for path in stage(args.out, args.old_operator_src):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
