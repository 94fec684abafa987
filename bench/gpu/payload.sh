#!/usr/bin/env bash
# Build the device payload for bench/gpu: vLLM (one wheel, trimmed to what one Hopper GPU needs) plus the
# Python packages vLLM's OpenAI server imports that the device image lacks, as one zstd stream, and a zstd
# binary (the image has none). The device has no registry and a device call carries at most 64 MiB, so the
# payload is built here and travels in an ignored folder of the checkout.
#
#   bash bench/gpu/payload.sh OUT_DIR [VLLM_WHEEL]
#
# Needs: pip with network, a Python 3.12 (the device's version) to lay out the packages, zstd.
set -euo pipefail
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
WHEEL=${2:-/tmp/vllmwheel/vllm-0.24.0-cp38-abi3-manylinux_2_28_x86_64.whl}
# pyenv's python3.12 shim fails when 3.12 is not the selected version: prefer a real interpreter.
PY312=${PY312:-/root/.pyenv/versions/3.12.1/bin/python3}
[ -x "$PY312" ] || PY312=python3.12
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/gpu-payload.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PLATFORMS=(--only-binary=:all: --python-version 3.12 --implementation cp)
for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1 manylinux_2_5; do
  PLATFORMS+=(--platform "${p}_x86_64")
done

# 1. vLLM, trimmed. FlashAttention 3 is what Hopper uses; FA2, the Rust frontend, Blackwell/MLA/MoE/FP4
#    extensions and DeepGEMM are not loaded for a dense bf16/fp16 TeleChat2 on one H200.
mkdir -p "$WORK/vllm" "$WORK/deps" "$WORK/site"
(cd "$WORK/vllm" && unzip -q "$WHEEL")
V="$WORK/vllm/vllm"
rm -rf "$V/vllm_flash_attn/_vllm_fa2_C.abi3.so" "$V/vllm-rs" "$V/_moe_C_stable_libtorch.abi3.so" \
  "$V"/_flashmla*.so "$V/_qutlass_C.abi3.so" "$V/third_party/fmha_sm100" "$V/third_party/deep_gemm"
python3 "$HERE/fatbin.py" "$V/_C_stable_libtorch.abi3.so" --keep-arch 90

# 2. What the OpenAI server imports and the device image lacks. Resolved together so versions agree, then
#    the wheels of packages the image already has (its torch stack, numpy, transformers, ...) are dropped:
#    a second copy on PYTHONPATH would shadow the image's build.
python3 -m pip download -q "${PLATFORMS[@]}" -d "$WORK/deps" \
  cachetools blake3 "fastapi[standard]>=0.133.0,<0.137.0" "starlette>=1.0.1" "openai>=2.0.0" \
  "pydantic>=2.12.0" "prometheus-fastapi-instrumentator>=8.0.0" "lm-format-enforcer==0.11.3" \
  "diskcache==5.6.3" "lark==1.2.2" partial-json-parser "jsonschema>=4.23.0" "pyzmq>=25.0.0" msgspec \
  "depyf==0.20.0" watchfiles python-json-logger pybase64 cbor2 ijson setproctitle "openai-harmony>=0.0.3" \
  "anthropic>=0.71.0" "model-hosting-container-standards>=0.1.14,<1.0.0" mcp "opentelemetry-sdk>=1.27.0" \
  "opentelemetry-api>=1.27.0" "opentelemetry-exporter-otlp>=1.27.0" \
  "opentelemetry-semantic-conventions-ai>=0.4.1"
# On the image already (KINDS.md's package list), or not needed to serve a text model.
DROP="anyio attrs certifi charset_normalizer click h11 httpcore httpx idna jinja2 markdown_it_py markupsafe mdurl
  numpy opencv_python_headless packaging pillow prometheus_client protobuf pygments pyyaml regex requests rich
  setuptools shellingham tiktoken typer typing_extensions urllib3 uvloop grpcio mistral_common pycountry
  cryptography cffi pycparser fastapi_cloud_cli sentry_sdk rignore fastar agent_detector detect_installer
  httptools websockets dnspython"
for name in $DROP; do rm -f "$WORK/deps/${name}"-[0-9]*.whl; done
# The structured-output backends are imported when vLLM's v1 engine is (class annotations), and the
# openai client's transport needs truststore; llguidance is only published for manylinux_2_31.
python3 -m pip download -q --no-deps "${PLATFORMS[@]}" --platform manylinux_2_31_x86_64 \
  --platform manylinux_2_24_x86_64 -d "$WORK/deps" \
  "llguidance>=1.7.0,<1.8.0" "xgrammar>=0.2.1,<1.0.0" "apache-tvm-ffi>=0.1.11" "truststore>=0.10"
"$PY312" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WORK"/deps/*.whl
ls "$WORK/deps" > "$OUT/payload-wheels.txt"

# 3. One stream; the device unpacks it in about a second.
DIST=$(cd "$WORK/vllm" && ls -d vllm-*.dist-info)
tar -cf - -C "$WORK/vllm" vllm "$DIST" -C "$WORK/site" . | zstd -f -T2 -19 --long=27 -q -o "$OUT/payload.tar.zst"
mkdir -p "$OUT/bin"
cp "$(command -v zstd)" "$OUT/bin/zstd"
cp -L "$(ldd "$(command -v zstd)" | awk '/liblz4/ {print $3}')" "$OUT/bin/"
ls -l "$OUT/payload.tar.zst" "$OUT/bin"
du -sh "$OUT"
