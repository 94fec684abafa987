"""Long context on real vLLM (CPU build): the rendered configuration covers maxModelLen with TeleChat's rope.

vLLM's Llama code sizes the rotary table from ``max_position_embeddings`` (8192 when the config has none, as
TeleChat's do), so without the operator's overrides a prompt past 8192 reads outside the table: NaN on the
CPU, a dead engine on a GPU. Three checks, on a tiny TeleChat2 with the 115B layout (fp32, GQA), trained
length 8192, maxModelLen 16384 (2 x native, rope dynamic x2):

(a) the rotary embedding vLLM builds from the rendered vllm.yaml, read off the loaded model, covers 16384
    positions with TeleChat's NTK base; the same check fails on the rendering before the fix;
(b) through the operator, prompts of 12288 (1.5 x the old cap) and 16320 tokens return 200 and /health
    stays 200;
(c) vLLM's prompt logprobs agree with a plain-torch forward pass that implements TeleChat's NTK formula,
    and disagree when the rope parameters are left out.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from tests.e2e.conftest import model_volume
from tests.e2e.test_vllm_e2e import Served, namespace_for, serve
from tests.helpers import ROOT, Cluster
from tests.operator_process import OperatorProcess

from local_node import CPU_IMAGE_ENV  # hack/ is on sys.path (tests/e2e/conftest.py)
from telechat_operator.deployment.reconciler import check_deployment
from telechat_operator.render.engine_vllm import CONFIG_DIR, CONFIG_FILE, EngineFiles, render_engine
from telechat_operator.rope import telechat_mscale, telechat_ntk_alpha

E2E = ROOT / "tests" / "e2e"
SERVED = "telechat-long"
TRAINED = 8192  # the tiny checkpoint's seq_length/training_seqlen, and TeleChat2-115B's
MAX_MODEL_LEN = 16384
LONG_PROMPT = MAX_MODEL_LEN - 64
OLD_CAP = 8192
# Both sides compute in float32; what is left is summation order (vLLM's CPU attention against a blocked
# softmax): measured max 4.2e-4 over 8k positions. 5e-3 is ten times that and a tenth of the smallest
# effect checked for (the mean change when the NTK base is left out is about 5e-2, its max about 3).
TOLERANCE = 5e-3
# Query/key gain of the checkpoint: sharp enough attention that positions show in the logits.
QK_GAIN = 8.0


def long_spec(node_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {
            "name": "Tele-AI/TeleChat2-115B",
            "servedModelName": SERVED,
            "pvc": {"claimName": "tiny-model", "path": "115b-long"},
        },
        "engine": {
            "dtype": "float32",
            "tensorParallelSize": 1,
            "maxModelLen": MAX_MODEL_LEN,
            "ropeScaling": {"type": "dynamic", "factor": 2.0},
            "extraArgs": ["--enforce-eager"],
        },
        "probes": {"startupBudgetSeconds": 600},
    }
    if node_name:
        spec["scheduling"] = {"nodeSelector": {"kubernetes.io/hostname": node_name}}
    return spec


def rendered_engine() -> EngineFiles:
    checked = check_deployment(long_spec())
    return render_engine(checked.spec, checked.effective)


def without_fix(options: dict[str, Any], keep_positions: bool) -> dict[str, Any]:
    """The rendering before the fix (no positions, no alpha), or only the rope parameters left out."""
    overrides = dict(options["hf-overrides"])
    if not keep_positions:
        overrides.pop("max_position_embeddings")
    overrides["rope_scaling"] = {k: v for k, v in overrides["rope_scaling"].items() if k != "alpha"}
    return {**options, "hf-overrides": overrides}


def rotary_findings(rotary: dict[str, Any], served: int, trained: int) -> list[str]:
    """What is wrong with the rotary embedding vLLM built, for a context of ``served`` tokens."""
    problems = []
    if rotary["positions"] < served:
        problems.append(f"table covers {rotary['positions']} positions, fewer than {served}")
    alpha = telechat_ntk_alpha(served, trained)
    base = 10000.0 * alpha ** (rotary["rotary_dim"] / (rotary["rotary_dim"] - 2))
    if not math.isclose(rotary["table_base"], base, rel_tol=1e-4):
        problems.append(f"NTK base {rotary['table_base']:.1f}, TeleChat's is {base:.1f} (alpha {alpha})")
    return problems


def max_gap(a: list[float], b: list[float], start: int = 0) -> float:
    """Largest absolute difference from position ``start`` on; inf where either side is not finite."""
    pairs = list(zip(a, b, strict=True))[start:]
    return max(abs(x - y) if math.isfinite(x) and math.isfinite(y) else math.inf for x, y in pairs)


@pytest.fixture(scope="module")
def long_models(vllm_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("long-models")
    subprocess.run(
        [
            *(vllm_python, str(E2E / "tiny_telechat.py"), str(root / "115b-long"), "--layout", "115b"),
            *("--seq-length", str(TRAINED), "--qk-gain", str(QK_GAIN)),
        ],
        check=True,
        capture_output=True,
    )
    return root


@pytest.fixture(scope="module")
def tokens(long_models: Path) -> Path:
    rng = random.Random(20261204)
    ids = [1] + [rng.randrange(11, 512) for _ in range(LONG_PROMPT - 1)]  # bos, then no special tokens
    path = long_models / "tokens.json"
    path.write_text(json.dumps(ids))
    return path


def _run(vllm_python: str, script: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **CPU_IMAGE_ENV, "HOME": str(home)}
    return subprocess.run(
        [vllm_python, str(E2E / script), *args], capture_output=True, text=True, env=env, timeout=600
    )


def probe(vllm_python: str, name: str, engine: EngineFiles, options: dict[str, Any], model: Path) -> Any:
    """Run vLLM in-process with the rendered arguments and files; only the config folder and the model
    path are changed. ``crashed`` says whether the process died (a forward pass out of the rope table)."""
    work = model.parent / f"probe-{name}"
    work.mkdir()
    for file, text in engine.files.items():
        (work / file).write_text(text)
    text = yaml.safe_dump({**options, "model": str(model)}).replace(CONFIG_DIR, str(work))
    (work / CONFIG_FILE).write_text(text)
    args = [a.replace(CONFIG_DIR, str(work)) for a in engine.args]
    out = work / "out.json"
    proc = _run(vllm_python, "rope_probe.py", str(model.parent / "tokens.json"), str(out), *args, home=work)
    assert out.exists(), f"vLLM did not load the model:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    report: dict[str, Any] = json.loads(out.read_text())
    report["crashed"] = proc.returncode != 0
    report["log_tail"] = proc.stderr[-600:]
    return report


def reference(vllm_python: str, model: Path, *flags: str) -> list[float]:
    tokens = model.parent / "tokens.json"
    out = model.parent / f"reference{''.join(flags)}.json"
    proc = _run(
        vllm_python, "telechat_reference.py", str(model), str(tokens), str(out), *flags, home=model.parent
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    values: list[float] = json.loads(out.read_text())
    return values


@pytest.fixture(scope="module")
def runs(vllm_python: str, long_models: Path, tokens: Path) -> dict[str, Any]:
    engine = rendered_engine()
    options = yaml.safe_load(engine.files[CONFIG_FILE])
    model = long_models / "115b-long"
    before, no_params = without_fix(options, keep_positions=False), without_fix(options, keep_positions=True)
    return {
        "fixed": probe(vllm_python, "fixed", engine, options, model),
        "before_fix": probe(vllm_python, "before-fix", engine, before, model),
        "no_rope_params": probe(vllm_python, "no-rope-params", engine, no_params, model),
        "telechat_ntk": reference(vllm_python, model, "--no-mscale"),
        "telechat_full": reference(vllm_python, model),
    }


def test_rotary_table_covers_max_model_len_with_telechats_ntk(runs: dict[str, Any]) -> None:
    fixed = runs["fixed"]
    print("rotary embedding built from the rendering:", fixed["rotary"])
    assert fixed["max_model_len"] == MAX_MODEL_LEN
    assert fixed["rotary"]["class"] == "DynamicNTKAlphaRotaryEmbedding"
    assert fixed["rotary"]["alpha"] == telechat_ntk_alpha(MAX_MODEL_LEN, TRAINED) == 3
    assert rotary_findings(fixed["rotary"], MAX_MODEL_LEN, TRAINED) == []
    # The same check on the rendering before the fix: 8192 positions and an unscaled base.
    before = rotary_findings(runs["before_fix"]["rotary"], MAX_MODEL_LEN, TRAINED)
    print("before the fix:", before)
    assert any("covers 8192 positions" in p for p in before)
    assert any("NTK base" in p for p in before)


def test_prompt_logprobs_follow_telechats_ntk(runs: dict[str, Any]) -> None:
    ntk, full = runs["telechat_ntk"], runs["telechat_full"]
    fixed = runs["fixed"]["logprobs"]
    assert not runs["fixed"]["crashed"] and not runs["no_rope_params"]["crashed"]
    before = runs["before_fix"]
    gaps = {
        "fixed vs TeleChat NTK": max_gap(fixed, ntk),
        "fixed vs TeleChat NTK + mscale": max_gap(fixed, full),
        "rope parameters left out vs TeleChat NTK": max_gap(runs["no_rope_params"]["logprobs"], ntk),
        # The rendering before the fix reads past its 8192-row table: NaN, or the engine dies.
        "before the fix vs TeleChat NTK, past 8192": (
            math.inf if before["crashed"] else max_gap(before["logprobs"], ntk, OLD_CAP)
        ),
    }
    print("before the fix:", "vLLM died" if before["crashed"] else "returned", before["log_tail"][-200:])
    print(json.dumps(gaps, indent=2))
    mscale = telechat_mscale(LONG_PROMPT, TRAINED)
    print(f"TeleChat's mscale at {LONG_PROMPT} tokens: {mscale:.4f}; vLLM's dynamic rope has none")
    assert gaps["fixed vs TeleChat NTK"] <= TOLERANCE
    assert gaps["rope parameters left out vs TeleChat NTK"] > 100 * TOLERANCE
    assert gaps["before the fix vs TeleChat NTK, past 8192"] > 100 * TOLERANCE


@pytest.fixture(scope="module")
def served_long(
    cluster: Cluster, operator: OperatorProcess, local_node: Any, long_models: Path
) -> Iterator[Served]:
    ns = namespace_for(cluster, "e2e-long")
    model_volume(cluster, ns, long_models)
    try:
        yield serve(cluster, local_node, long_models, ns, "long", long_spec(local_node.node_name))
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        cluster.kubectl("delete", "pv", f"{ns}-tiny-model", "--wait=false")


def _complete(served: Served, prompt: list[int], **extra: Any) -> requests.Response:
    body = {"model": SERVED, "prompt": prompt, "max_tokens": 4, "temperature": 0.0, **extra}
    return requests.post(f"{served.base_url}/completions", json=body, timeout=300)


def _health(served: Served) -> int:
    return requests.get(served.base_url.removesuffix("/v1") + "/health", timeout=10).status_code


def test_long_prompts_served_and_engine_stays_healthy(
    served_long: Served, tokens: Path, runs: dict[str, Any]
) -> None:
    ids = json.loads(tokens.read_text())
    for length in (OLD_CAP + OLD_CAP // 2, LONG_PROMPT):
        response = _complete(served_long, ids[:length])
        assert response.status_code == 200, response.text[:2000]
        assert response.json()["usage"]["prompt_tokens"] == length
        assert _health(served_long) == 200
    # The served pod, run by the rendered command, computes what the in-process probe computed.
    response = _complete(served_long, ids, max_tokens=1, prompt_logprobs=0)
    assert response.status_code == 200, response.text[:2000]
    entries = response.json()["choices"][0]["prompt_logprobs"][1:]
    served_logprobs = [entry[str(tok)]["logprob"] for entry, tok in zip(entries, ids[1:], strict=True)]
    assert max_gap(served_logprobs, runs["telechat_ntk"]) <= TOLERANCE
    assert _health(served_long) == 200
