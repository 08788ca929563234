#!/usr/bin/env bash
# Create .venv and install vsr-stream into it (editable, with test extras).
# PyTorch: installs the pinned CPU build first when torch is missing, so pip does not
# resolve the range in pyproject.toml to a multi-GB CUDA build. Set VSR_GPU=1 for the [gpu] extra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VSR_VENV:-.venv}
TORCH_CPU_PIN=${TORCH_CPU_PIN:-torch==2.13.0}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  pip_ "$TORCH_CPU_PIN" || pip_ "$TORCH_CPU_PIN" --index-url https://download.pytorch.org/whl/cpu
fi
extras=test
[ "${VSR_GPU:-0}" = 1 ] && extras=test,gpu
pip_ -e ".[$extras]"
echo "installed: $("$VENV/bin/vsr-stream" --version)"
