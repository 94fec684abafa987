"""A random-weight checkpoint at a catalog model's real width, written into a Hugging Face cache.

The file layout, config keys, remote-code config class, special tokens and chat template come from the
project's tiny TeleChat2 generator (tests/e2e/tiny_telechat.py); only the sizes are the catalog's. The
checkpoint is written where the operator's pod finds a downloaded model: ``HF_HOME/hub/models--Org--Name/
snapshots/REV`` with ``refs/main`` naming REV, so the rendered ``model: Tele-AI/...`` resolves offline and
the model path needs no rewriting.

The tokenizer is the tiny 512-token BPE, padded with placeholder entries ``~<id>~`` up to the model's
vocabulary: no merge produces them, so encoding is unchanged, and every id the random model samples
decodes to text. Weights are drawn on the GPU (seconds) and written in 5 GB shards.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

SNAPSHOT_REVISION = "0000000000000000000000000000000000000000"
SHARD_BYTES = 5 * 10**9


def cache_snapshot_dir(hf_home: Path, model_id: str, revision: str = SNAPSHOT_REVISION) -> Path:
    """Where huggingface_hub looks for ``model_id`` at ``revision`` (refs/main points at it)."""
    return hf_home / "hub" / f"models--{model_id.replace('/', '--')}" / "snapshots" / revision


def padded_tokenizer(tiny: ModuleType, vocab_size: int) -> str:
    """tokenizer.json of the tiny BPE with placeholder entries up to ``vocab_size`` ids."""
    data = json.loads(tiny._build_tokenizer().to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    if next_id != tiny.VOCAB:
        raise RuntimeError(f"tiny tokenizer has {next_id} ids, expected {tiny.VOCAB}")
    for i in range(next_id, vocab_size):
        vocab[f"~{i}~"] = i
    return json.dumps(data, ensure_ascii=False)


def model_config(tiny: ModuleType, shape: dict[str, Any], layers: int) -> dict[str, Any]:
    layout = layout_of(shape)
    cfg: dict[str, Any] = tiny._config(layout, shape["native_context"])
    trained = shape.get("trained_context") or shape["native_context"]
    cfg.update(
        {
            "architectures": [shape["architecture"] or "TeleChat2ForCausalLM"],
            "vocab_size": shape["vocab_size"],
            "hidden_size": shape["hidden_size"],
            "n_layer": layers,
            "n_head": shape["heads"],
            "num_key_value_heads": shape["kv_heads"],
            "ffn_hidden_size": shape["ffn_hidden_size"],
            "torch_dtype": shape["stored_dtype"],
            # TeleChat's config names the trained length training_seqlen/base_seqlen.
            "training_seqlen": trained,
            "base_seqlen": trained,
            "rope_theta": shape["rope_theta"],
        }
    )
    return cfg


def layout_of(shape: dict[str, Any]) -> str:
    """The tiny generator's layout: 115b (no chat template, TelechatConfig) or telechat2."""
    return "telechat2" if shape["ships_chat_template"] else "115b"


def _tensors(shape: dict[str, Any], layers: int, dtype: Any, seed: int) -> Any:
    import torch

    hidden, heads, kv_heads = shape["hidden_size"], shape["heads"], shape["kv_heads"]
    ffn, vocab, head_dim = (
        shape["ffn_hidden_size"],
        shape["vocab_size"],
        shape["hidden_size"] // shape["heads"],
    )
    device = os.environ.get("BENCH_TENSOR_DEVICE", "cuda")  # "cpu" for the local check of the driver
    gen = torch.Generator(device=device).manual_seed(seed)

    def rand(*dims: int) -> Any:
        return (torch.randn(*dims, generator=gen, device=device) * 0.02).to(dtype)

    def ones(n: int) -> Any:
        return torch.ones(n, device=device, dtype=dtype)

    yield "transformer.word_embeddings.weight", rand(vocab, hidden)
    for i in range(layers):
        p = f"transformer.h.{i}"
        yield f"{p}.input_layernorm.weight", ones(hidden)
        yield f"{p}.self_attention.query.weight", rand(heads * head_dim, hidden)
        # key_value rows: [k ; v] of one KV head after another, the layout vLLM's TeleChat2 loader splits.
        kv = torch.cat([rand(kv_heads, head_dim, hidden), rand(kv_heads, head_dim, hidden)], dim=1)
        yield f"{p}.self_attention.key_value.weight", kv.reshape(kv_heads * 2 * head_dim, hidden)
        yield f"{p}.self_attention.dense.weight", rand(hidden, heads * head_dim)
        yield f"{p}.self_attention.dense.bias", rand(hidden)
        yield f"{p}.post_attention_layernorm.weight", ones(hidden)
        yield f"{p}.mlp.gate_proj.weight", rand(ffn, hidden)
        yield f"{p}.mlp.up_proj.weight", rand(ffn, hidden)
        yield f"{p}.mlp.down_proj.weight", rand(hidden, ffn)
        yield f"{p}.mlp.down_proj.bias", rand(hidden)
    yield "transformer.ln_f.weight", ones(hidden)
    yield "lm_head.weight", rand(vocab, hidden)


def generate(
    tiny: ModuleType, hf_home: Path, model_id: str, shape: dict[str, Any], layers: int
) -> dict[str, Any]:
    """Write the checkpoint; returns what was written (parameters, bytes, seconds)."""
    import torch
    from safetensors.torch import save_file

    started = time.monotonic()
    snapshot = cache_snapshot_dir(hf_home, model_id)
    snapshot.mkdir(parents=True, exist_ok=True)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(SNAPSHOT_REVISION)
    layout = layout_of(shape)

    (snapshot / "tokenizer.json").write_text(padded_tokenizer(tiny, shape["vocab_size"]), encoding="utf-8")
    tiny._write_json(snapshot / "tokenizer_config.json", tiny._tokenizer_config(layout))
    tiny._write_json(snapshot / "special_tokens_map.json", tiny._special_tokens_map())
    tiny._write_json(snapshot / "config.json", model_config(tiny, shape, layers))
    module, _ = tiny._config_class_name(layout)
    (snapshot / f"{module}.py").write_text(tiny._config_class_source(layout), encoding="utf-8")
    tiny._write_json(snapshot / "generation_config.json", tiny._generation_config())

    dtype = getattr(torch, shape["stored_dtype"])
    shards: list[dict[str, Any]] = [{}]
    filled = total = 0
    for name, tensor in _tensors(shape, layers, dtype, tiny.SEED):
        nbytes = tensor.numel() * tensor.element_size()
        if filled and filled + nbytes > SHARD_BYTES:
            shards.append({})
            filled = 0
        shards[-1][name] = tensor.cpu()
        filled += nbytes
        total += nbytes
    drawn = time.monotonic()
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(snapshot / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, filename))
    tiny._write_json(
        snapshot / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    del shards
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    done = time.monotonic()
    return {
        "model_id": model_id,
        "path": str(snapshot),
        "layers": layers,
        "dtype": shape["stored_dtype"],
        "parameters": total // torch.tensor([], dtype=dtype).element_size(),
        "bytes": total,
        "shards": len(set(weight_map.values())),
        "draw_s": round(drawn - started, 1),
        "write_s": round(done - drawn, 1),
    }


def load_tiny(path: Path, chat_template: Path) -> ModuleType:
    """Import tiny_telechat.py from ``path`` (a copy travels with the device payload).

    The generator finds the operator's chat template relative to the repository; a staged copy is
    elsewhere, so it is pointed at the template staged beside it.
    """
    sys.path.insert(0, str(path.parent))
    tiny = importlib.import_module("tiny_telechat")
    setattr(tiny, "CHAT_TEMPLATE", chat_template)  # noqa: B010 (a module loaded by name)
    return tiny
