#!/usr/bin/env bash
# Set up a development environment in .venv: PyTorch, rnnlab (editable) and the dev tools.
# Installs torch first so that a CPU-only machine keeps its CPU build (pip would otherwise resolve
# torch as a dependency and may pull a multi-GB CUDA build). Override with TORCH_SPEC=... if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e '.[dev,sweep,cluster]'
.venv/bin/python -c "import torch, rnnlab; print(f'rnnlab {rnnlab.__version__} with torch {torch.__version__} ready in .venv')"
