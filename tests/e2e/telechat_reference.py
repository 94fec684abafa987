#!/usr/bin/env python3
"""A plain-torch forward pass of a tiny TeleChat2 checkpoint with TeleChat's own rotary embedding.

What vLLM computes is checked against this: it reads the checkpoint the generator wrote (tiny_telechat.py)
and follows TeleChat2's modeling code, not vLLM's: RMSNorm, attention with the `key_value` layout
(k and v interleaved per KV head), grouped-query heads, SwiGLU MLP with bias on down_proj, and TeleChat's
dynamic NTK rope for a sequence of L tokens over the trained length T:

    alpha  = max(2 ** ceil(log2(max(L, T) / T) + 1) - 1, 1)
    base'  = rope_theta * alpha ** (d / (d - 2))
    mscale = 1 + 0.1 * ln(max(L, T) / T)          (multiplies cos and sin)

``--rope plain`` uses the unscaled base and no mscale (what vLLM does without the operator's parameters);
``--no-mscale`` keeps TeleChat's base but leaves out mscale, which vLLM's dynamic rope cannot express.

Usage (the vLLM environment's python, which has torch and safetensors):
  python telechat_reference.py CHECKPOINT TOKENS.json OUT.json [--rope telechat|plain] [--no-mscale]
OUT.json holds the log-probability of every token after the first, given the tokens before it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

QUERY_CHUNK = 1024  # queries per attention block: bounds memory at long lengths


def rope_tables(length: int, head_dim: int, theta: float, trained: int, rope: str, mscale_on: bool):
    import torch

    if rope == "telechat":
        alpha = max(2 ** math.ceil(math.log2(max(length, trained) / trained) + 1) - 1, 1)
        base = theta * alpha ** (head_dim / (head_dim - 2))
        scale = max(length, trained) / trained
        mscale = (0.1 * math.log(scale) + 1.0) if (mscale_on and scale > 1) else 1.0
    else:
        base, mscale = theta, 1.0
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * mscale).float(), (emb.sin() * mscale).float()


def _rotate_half(x):
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rms(x, weight, eps: float):
    return x * (x.pow(2).mean(-1, keepdim=True) + eps).rsqrt() * weight


def _attention(q, k, v):
    """Causal attention, q [H, L, d], k/v [H, L, d], in query blocks."""
    import torch

    length, head_dim = q.shape[1], q.shape[2]
    out = torch.empty_like(q)
    for start in range(0, length, QUERY_CHUNK):
        stop = min(start + QUERY_CHUNK, length)
        scores = q[:, start:stop] @ k[:, :stop].transpose(1, 2) / math.sqrt(head_dim)
        rows = torch.arange(start, stop).unsqueeze(1)
        cols = torch.arange(stop).unsqueeze(0)
        scores = scores.masked_fill(cols > rows, float("-inf"))
        out[:, start:stop] = torch.softmax(scores, dim=-1) @ v[:, :stop]
    return out


def forward_logprobs(checkpoint: Path, tokens: list[int], rope: str = "telechat", mscale_on: bool = True):
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((checkpoint / "config.json").read_text())
    w = {k: v.float() for k, v in load_file(str(checkpoint / "model.safetensors")).items()}
    hidden, heads = cfg["hidden_size"], cfg["n_head"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = hidden // heads
    eps = cfg["layer_norm_epsilon"]
    length = len(tokens)
    cos, sin = rope_tables(
        length, head_dim, cfg.get("rope_theta", 10000.0), cfg["training_seqlen"], rope, mscale_on
    )
    with torch.no_grad():
        x = w["transformer.word_embeddings.weight"][torch.tensor(tokens)]
        for i in range(cfg["n_layer"]):
            p = f"transformer.h.{i}"
            h = _rms(x, w[f"{p}.input_layernorm.weight"], eps)
            q = (h @ w[f"{p}.self_attention.query.weight"].T).view(length, heads, head_dim)
            kv = (h @ w[f"{p}.self_attention.key_value.weight"].T).view(length, kv_heads, 2 * head_dim)
            k, v = kv[..., :head_dim], kv[..., head_dim:]
            c, s = cos.unsqueeze(1), sin.unsqueeze(1)
            q = q * c + _rotate_half(q) * s
            k = k * c + _rotate_half(k) * s
            group = heads // kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            attn = _attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
            attn = attn.transpose(0, 1).reshape(length, hidden)
            x = x + attn @ w[f"{p}.self_attention.dense.weight"].T + w[f"{p}.self_attention.dense.bias"]
            h = _rms(x, w[f"{p}.post_attention_layernorm.weight"], eps)
            gate = torch.nn.functional.silu(h @ w[f"{p}.mlp.gate_proj.weight"].T)
            up = h @ w[f"{p}.mlp.up_proj.weight"].T
            x = x + (gate * up) @ w[f"{p}.mlp.down_proj.weight"].T + w[f"{p}.mlp.down_proj.bias"]
        logits = _rms(x, w["transformer.ln_f.weight"], eps) @ w["lm_head.weight"].T
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        nxt = torch.tensor(tokens[1:])
        return logprobs[:-1].gather(1, nxt.unsqueeze(1)).squeeze(1).tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("tokens", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rope", choices=("telechat", "plain"), default="telechat")
    ap.add_argument("--no-mscale", action="store_true")
    args = ap.parse_args(argv)
    tokens = json.loads(args.tokens.read_text())
    values = forward_logprobs(args.checkpoint, tokens, args.rope, not args.no_mscale)
    args.out.write_text(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
