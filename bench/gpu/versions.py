"""Which of the operator's rendered vLLM options a vLLM source tree accepts, read from its argument classes.

  python -m bench.gpu.versions 0.24.0=/tmp/src024/vllm 0.33.0=/tmp/src033/vllm [--extra FLAG ...]

vLLM builds its command line from dataclasses: ``EngineArgs`` (engine/arg_utils.py) and the OpenAI
server's ``FrontendArgs``/``BaseFrontendArgs`` (entrypoints/openai/cli_args.py up to 0.2x, launchers/
or common/cli_args.py later). A ``--config`` YAML key is accepted when it names a field of one of
them (dashes for underscores). The files are parsed with ``ast``, not imported: a wheel for another
torch or platform can be read as well as an installed one. Also read: whether the registry maps the
architectures TeleChat checkpoints name, and whether the dynamic-NTK-alpha rotary class exists.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ARG_FILES = (
    "engine/arg_utils.py",
    "entrypoints/openai/cli_args.py",  # up to 0.2x
    "entrypoints/launchers/cli_args.py",  # 0.32
    "entrypoints/common/cli_args.py",  # 0.33
)
ARG_CLASSES = {"EngineArgs", "AsyncEngineArgs", "BaseFrontendArgs", "FrontendArgs"}
ARCHITECTURES = ("TeleChat2ForCausalLM", "TeleChatForCausalLM", "TelechatForCausalLM")


def argument_fields(vllm_dir: Path) -> set[str]:
    fields: set[str] = set()
    for name in ARG_FILES:
        path = vllm_dir / name
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name in ARG_CLASSES:
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        fields.add(item.target.id)
    return fields


def registered_architectures(vllm_dir: Path) -> dict[str, bool]:
    text = (vllm_dir / "model_executor/models/registry.py").read_text()
    # A mapping entry ("Arch": (module, class)); a later version lists removed ones as "Arch": "0.25.0".
    return {arch: f'"{arch}": (' in text for arch in ARCHITECTURES}


def has_alpha_rope(vllm_dir: Path) -> bool:
    return (vllm_dir / "model_executor/layers/rotary_embedding/dynamic_ntk_alpha_rope.py").exists()


def matrix(trees: dict[str, Path], flags: list[str]) -> str:
    fields = {version: argument_fields(path) for version, path in trees.items()}
    head = "| option | " + " | ".join(trees) + " |\n|---|" + "---|" * len(trees) + "\n"
    rows = []
    for flag in flags:
        # "config" is parsed before the dataclasses (FlexibleArgumentParser), never a field.
        cells = [
            "yes" if flag == "config" or flag.replace("-", "_") in fields[v] else "**no**" for v in trees
        ]
        rows.append(f"| `{flag}` | " + " | ".join(cells) + " |")
    for arch in ARCHITECTURES:
        cells = [
            "registered" if registered_architectures(p)[arch] else "not registered" for p in trees.values()
        ]
        rows.append(f"| architecture `{arch}` | " + " | ".join(cells) + " |")
    cells = ["yes" if has_alpha_rope(p) else "**no**" for p in trees.values()]
    rows.append(
        "| rope `dynamic` with `alpha` (DynamicNTKAlphaRotaryEmbedding) | " + " | ".join(cells) + " |"
    )
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", help="VERSION=PATH to a vllm package directory")
    ap.add_argument("--flags", nargs="+", required=True, help="rendered option names")
    args = ap.parse_args(argv)
    trees = {k: Path(v) for k, v in (t.split("=", 1) for t in args.trees)}
    sys.stdout.write(matrix(trees, args.flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
