#!/usr/bin/env python3
"""Write a tiny, random-weight TeleChat2 checkpoint that vLLM can serve in seconds on a CPU.

The checkpoint keeps TeleChat2's own on-disk layout (tensor names, `key_value` interleave, config keys,
remote-code config class, special tokens) so the operator's end-to-end tests exercise the same paths a real
TeleChat2 model takes through vLLM; only the sizes are tiny and the weights are noise.

Layouts:
  telechat2  like TeleChat2-3B/7B: architectures ["TeleChat2ForCausalLM"], KV heads = heads, bfloat16,
             tokenizer carries the operator's TeleChat chat template.
  115b       like TeleChat2-115B: architectures ["TelechatForCausalLM"] (vLLM does not register it, so it
             needs hf_overrides architectures=["TeleChat2ForCausalLM"]), grouped-query attention (fewer KV
             heads), float32 weights, and NO chat template (the operator has to supply one).

Usage (run with the python of the vLLM environment, which has torch, safetensors and tokenizers):
  python tests/e2e/tiny_telechat.py OUT_DIR [--layout telechat2|115b] [--seq-length 4096]
or from Python: `generate(Path(out_dir), layout="telechat2", seq_length=4096)`.

The output is deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

LAYOUTS = ("telechat2", "115b")

# Shapes: tiny, but every dimension a real TeleChat2 has is present.
N_LAYER = 2
HIDDEN = 128
N_HEAD = 4
KV_HEADS = {"telechat2": N_HEAD, "115b": 2}  # 115B uses grouped-query attention (64 heads, 8 KV heads)
FFN = 256
VOCAB = 512  # the tokenizer is trained to exactly this size, so every id the model can emit decodes
LAYER_NORM_EPS = 1e-5
ROPE_THETA = 10000.0
SEED = 20240601
INIT_STD = 0.02

# TeleChat's special tokens, in TeleChat's id order (unk 0, bos 1, eos 2, pad 3, user 4, bot 5), then the
# system and tool tokens. All are single tokens that the BPE never splits.
SPECIAL_TOKENS = [
    "<unk>",
    "<_start>",
    "<_end>",
    "<_pad>",
    "<_user>",
    "<_bot>",
    "<_system>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]
UNK_ID, BOS_ID, EOS_ID, PAD_ID, USER_ID, BOT_ID = range(6)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = REPO_ROOT / "operator" / "telechat_operator" / "templates" / "telechat.jinja"

# Training text for the small BPE: plain English prose plus a little JSON and markup, so that common words,
# punctuation and the characters of structured output all get their own merges.
CORPUS = """\
The harbour town woke slowly on winter mornings. Fishing boats came back before sunrise, their decks
covered in ice and rope, and the market opened as soon as the first crates were carried up the stone steps.
Children walked to school along the sea wall while their parents argued about the price of cod, the weather
and the new ferry timetable. Nobody in the town remembered a winter as cold as this one.

A language model reads a sequence of tokens and predicts the next one. During training it sees billions of
sentences and slowly learns which words tend to follow which. At inference time the model is given a prompt,
generates one token, appends it to the prompt and repeats until it emits an end token or reaches a length
limit. Serving engines keep the attention keys and values of earlier tokens in a cache so that each new
token only costs a little extra work, and they batch many requests together to keep the hardware busy.

Kubernetes runs containers on a cluster of machines. An operator is a controller that watches custom
resources and keeps the real state of the cluster close to the state the user asked for. When a user creates
a resource describing a model server, the operator creates a deployment, a service and a few config maps,
then watches the pods until the server answers its health check. If a pod fails, the operator reports the
reason in the status of the resource, so that the user can see what went wrong without reading every log.

Please answer the question in one short sentence. What is the capital of France? The capital of France is
Paris. How many days are there in a week? There are seven days in a week. Which planet is closest to the
sun? Mercury is the planet closest to the sun. Tell me something about large language models. Large language
models are neural networks trained on a great deal of text; they can write, translate and answer questions.

{"name": "get_weather", "arguments": {"city": "Beijing", "unit": "celsius"}}
{"id": 42, "title": "A short report", "tags": ["alpha", "beta"], "valid": true, "score": 3.5, "note": null}
[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi! How can I help you today?"}]
<tools> function signatures, parameters, type object, properties, required, description, string, number
</tools> Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 -1
Punctuation: . , ; : ! ? ' " ( ) [ ] { } < > / \\ _ - + = * & % $ # @
"""


def _build_tokenizer():
    """Train a byte-level BPE of exactly VOCAB tokens with TeleChat's special tokens at ids 0..10."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=1,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Repeating the corpus changes no merge order but makes rarer pairs reach the vocabulary size.
    tok.train_from_iterator([CORPUS] * 4, trainer=trainer)
    size = tok.get_vocab_size(with_added_tokens=True)
    if size != VOCAB:
        raise RuntimeError(f"BPE trained to {size} tokens, expected {VOCAB}; extend CORPUS")
    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"special token {t} got id {tok.token_to_id(t)}, expected {i}")
    return tok


def _tokenizer_config(layout: str) -> dict:
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, t in enumerate(SPECIAL_TOKENS)
    }
    cfg: dict = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "additional_special_tokens": SPECIAL_TOKENS[4:],
        "bos_token": "<_start>",
        "eos_token": "<_end>",
        "pad_token": "<_pad>",
        "unk_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        # TeleChat ships a huge model_max_length; vLLM caps the context at min(config, this).
        "model_max_length": 100000000,
    }
    if layout == "telechat2":
        cfg["chat_template"] = CHAT_TEMPLATE.read_text(encoding="utf-8")
    return cfg


def _special_tokens_map() -> dict:
    return {
        "bos_token": "<_start>",
        "eos_token": "<_end>",
        "pad_token": "<_pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": SPECIAL_TOKENS[4:],
    }


def _config(layout: str, seq_length: int) -> dict:
    module, cls = _config_class_name(layout)
    cfg = {
        "architectures": ["TeleChat2ForCausalLM" if layout == "telechat2" else "TelechatForCausalLM"],
        "auto_map": {"AutoConfig": f"{module}.{cls}"},
        "model_type": "telechat",
        "vocab_size": VOCAB,
        "hidden_size": HIDDEN,
        "n_layer": N_LAYER,
        "n_head": N_HEAD,
        "num_key_value_heads": KV_HEADS[layout],
        "ffn_hidden_size": FFN,
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "initializer_range": INIT_STD,
        "apply_residual_connection_post_layernorm": False,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "embed_layernorm": False,
        "tie_word_embeddings": False,
        "use_cache": True,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "unk_token_id": UNK_ID,
        # TeleChat names its context length seq_length (vLLM reads it); it ships no max_position_embeddings.
        "seq_length": seq_length,
        "training_seqlen": seq_length,
        "base_seqlen": seq_length,
        "torch_dtype": "bfloat16" if layout == "telechat2" else "float32",
    }
    if layout == "telechat2":
        # TeleChat2 configs carry rope_theta and no rope_scaling (the -32K variants add rope_scaling dynamic).
        cfg["rope_theta"] = ROPE_THETA
    return cfg


def _config_class_name(layout: str) -> tuple[str, str]:
    if layout == "telechat2":
        return "configuration_telechat2", "Telechat2Config"
    return "configuration_telechat", "TelechatConfig"


def _config_class_source(layout: str) -> str:
    _, cls = _config_class_name(layout)
    return f'''"""TeleChat configuration class (remote code) of a tiny test checkpoint."""

from transformers import PretrainedConfig


class {cls}(PretrainedConfig):
    model_type = "telechat"
    keys_to_ignore_at_inference = ["past_key_values"]
    # TeleChat's own key names, exposed under the names generic code looks for.
    attribute_map = {{
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "intermediate_size": "ffn_hidden_size",
        "rms_norm_eps": "layer_norm_epsilon",
    }}

    def __init__(
        self,
        vocab_size=131072,
        hidden_size=4096,
        n_layer=30,
        n_head=32,
        num_key_value_heads=None,
        ffn_hidden_size=12288,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        use_cache=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        apply_residual_connection_post_layernorm=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        seq_length=8192,
        training_seqlen=8192,
        embed_layernorm=False,
        tie_word_embeddings=False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.n_layer = n_layer
        self.n_head = n_head
        self.num_key_value_heads = num_key_value_heads if num_key_value_heads is not None else n_head
        self.ffn_hidden_size = ffn_hidden_size
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.apply_residual_connection_post_layernorm = apply_residual_connection_post_layernorm
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.seq_length = seq_length
        self.training_seqlen = training_seqlen
        self.embed_layernorm = embed_layernorm
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
'''


def _generation_config() -> dict:
    # The values TeleChat2 ships (115B's generation_config.json), with TeleChat's role token ids.
    return {
        "max_new_tokens": 4096,
        "do_sample": False,
        "use_cache": True,
        "temperature": 0.3,
        "top_k": 5,
        "top_p": 0.85,
        "repetition_penalty": 1.03,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "user_token_id": USER_ID,
        "bot_token_id": BOT_ID,
    }


def _whitespace_ids(tok) -> list[int]:
    """Ids of the tokens that decode to nothing but whitespace (the special tokens excluded)."""
    n_special = len(SPECIAL_TOKENS)
    return [i for i in range(n_special, VOCAB) if tok.decode([i]).strip() == ""]


def _weights(layout: str, whitespace_ids: list[int], qk_gain: float = 1.0) -> dict:
    """Random tensors under TeleChat2's checkpoint names, in the layout vLLM's telechat2 loader reads.

    One deliberate non-random feature: a constant component on hidden dimension 0 of the last layer's output
    (down_proj bias) that lm_head turns into a large negative logit for whitespace-only tokens. Pure noise
    weights otherwise tend to loop on whitespace inside JSON grammars (vLLM allows any whitespace between JSON
    tokens unless told otherwise), which would make structured-output and tool-call tests flaky. All other
    tokens get 0 on that dimension, so everything else stays noise.

    ``qk_gain`` scales the query and key projections: noise weights give nearly uniform attention, which
    no rotary setting can change; sharper attention makes the positions (and so the rope) visible in the
    logits, which the long-context tests need.
    """
    import torch

    gen = torch.Generator().manual_seed(SEED)
    dtype = torch.bfloat16 if layout == "telechat2" else torch.float32
    head_dim = HIDDEN // N_HEAD
    kv_heads = KV_HEADS[layout]

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * INIT_STD

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, dtype=torch.float32)

    t: dict = {"transformer.word_embeddings.weight": rand(VOCAB, HIDDEN)}
    for i in range(N_LAYER):
        p = f"transformer.h.{i}"
        t[f"{p}.input_layernorm.weight"] = ones(HIDDEN)
        t[f"{p}.self_attention.query.weight"] = rand(N_HEAD * head_dim, HIDDEN)
        # key_value: rows per KV head are [k(head_dim) ; v(head_dim)], heads one after another.
        k = rand(kv_heads, head_dim, HIDDEN)
        if qk_gain != 1.0:
            t[f"{p}.self_attention.query.weight"] *= qk_gain
            k *= qk_gain
        v = rand(kv_heads, head_dim, HIDDEN)
        t[f"{p}.self_attention.key_value.weight"] = torch.cat([k, v], dim=1).reshape(
            kv_heads * 2 * head_dim, HIDDEN
        )
        t[f"{p}.self_attention.dense.weight"] = rand(HIDDEN, N_HEAD * head_dim)
        t[f"{p}.self_attention.dense.bias"] = rand(HIDDEN)
        t[f"{p}.post_attention_layernorm.weight"] = ones(HIDDEN)
        t[f"{p}.mlp.gate_proj.weight"] = rand(FFN, HIDDEN)
        t[f"{p}.mlp.up_proj.weight"] = rand(FFN, HIDDEN)
        t[f"{p}.mlp.down_proj.weight"] = rand(HIDDEN, FFN)
        t[f"{p}.mlp.down_proj.bias"] = rand(HIDDEN)
    t["transformer.ln_f.weight"] = ones(HIDDEN)
    t["lm_head.weight"] = rand(VOCAB, HIDDEN)
    # The whitespace suppressor (see the docstring).
    t[f"transformer.h.{N_LAYER - 1}.mlp.down_proj.bias"][0] = 1.0
    t["lm_head.weight"][:, 0] = 0.0
    t["lm_head.weight"][whitespace_ids, 0] = -4.0
    return {name: tensor.to(dtype).contiguous() for name, tensor in t.items()}


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(out_dir: Path, layout: str = "telechat2", seq_length: int = 4096, qk_gain: float = 1.0) -> Path:
    """Write the checkpoint into out_dir (created if needed) and return out_dir."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if seq_length < 64:
        raise ValueError(f"seq_length must be at least 64, got {seq_length}")
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = _build_tokenizer()
    weights = _weights(layout, _whitespace_ids(tok), qk_gain)
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    _write_json(out_dir / "config.json", _config(layout, seq_length))
    module, _ = _config_class_name(layout)
    (out_dir / f"{module}.py").write_text(_config_class_source(layout), encoding="utf-8")
    _write_json(out_dir / "generation_config.json", _generation_config())

    tok.save(str(out_dir / "tokenizer.json"), pretty=True)
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config(layout))
    _write_json(out_dir / "special_tokens_map.json", _special_tokens_map())
    for f in out_dir.iterdir():
        if f.is_file():
            f.chmod(0o644)  # safetensors writes 0600; a model server running as another user must read it
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--layout", choices=LAYOUTS, default="telechat2")
    ap.add_argument("--seq-length", type=int, default=4096)
    ap.add_argument("--qk-gain", type=float, default=1.0, help="scale of the query/key weights")
    args = ap.parse_args(argv)
    started = time.monotonic()
    out = generate(args.out_dir, layout=args.layout, seq_length=args.seq_length, qk_gain=args.qk_gain)
    print(f"wrote {args.layout} checkpoint to {out} in {time.monotonic() - started:.2f} s", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
