#!/usr/bin/env python3
"""Load vLLM in-process from a rendered vllm.yaml; report the rotary embedding it built and prompt logprobs.

The options are read by vLLM's own OpenAI-server argument parser (``--config FILE``), exactly as the pod's
command line does, and the rotary embedding is read off the loaded model's first attention layer, so what
is reported is what vLLM would compute for the rendered configuration, not what the operator intends.

Usage (the vLLM environment's python, with the CPU image environment):
  python rope_probe.py TOKENS.json OUT.json SERVER_ARGS...     (e.g. --config vllm.yaml --enforce-eager)
OUT.json: {"rotary": {...}, "max_model_len": N} as soon as the model is loaded, then also "logprobs":
[log p(token_i | tokens_<i) for i >= 1]; a run that dies in the forward pass leaves the first part.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

# The engine core in this process: apply_model then reads the model object itself.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def describe_rotary(model: Any) -> dict[str, Any]:
    rotary = model.model.layers[0].self_attn.rotary_emb
    cache = rotary.cos_sin_cache
    half = cache.shape[1] // 2
    # Row 1 holds cos/sin of the inverse frequencies themselves: read the base back from the table.
    row = cache[1].double()
    inv_freq_1 = math.atan2(float(row[half + 1]), float(row[1]))
    head_dim = 2 * half
    return {
        "class": type(rotary).__name__,
        "positions": int(cache.shape[0]),
        "alpha": getattr(rotary, "scaling_alpha", None),
        "factor": getattr(rotary, "scaling_factor", None),
        "configured_base": float(rotary.base),
        "table_base": inv_freq_1 ** (-head_dim / 2),
        "rotary_dim": int(rotary.rotary_dim),
    }


def main(argv: list[str]) -> int:
    tokens_path, out_path, server_args = Path(argv[0]), Path(argv[1]), argv[2:]
    from vllm import LLM, SamplingParams
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    args = make_arg_parser(FlexibleArgumentParser()).parse_args(server_args)
    llm = LLM.from_engine_args(EngineArgs.from_cli_args(args))
    report: dict[str, Any] = {
        "rotary": llm.apply_model(describe_rotary)[0],
        "max_model_len": llm.llm_engine.model_config.max_model_len,
    }
    out_path.write_text(json.dumps(report))
    tokens = json.loads(tokens_path.read_text())
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    (result,) = llm.generate([{"prompt_token_ids": tokens}], params, use_tqdm=False)
    prompt_logprobs = result.prompt_logprobs or []
    report["logprobs"] = [entry[t].logprob for entry, t in zip(prompt_logprobs[1:], tokens[1:], strict=True)]
    out_path.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
