#!/usr/bin/env bash
# Create or reuse ./.venv and install visdoc with the given extras (default: dev).
# Without an NVIDIA GPU, torch 2.13.0 is installed first: where a CPU wheel of it is provided
# locally (as on the project's CI machines) pip takes that instead of the multi-GB CUDA build.
# An already installed torch is kept, so a CPU build you installed yourself stays.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-dev}"
venv="${VISDOC_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        "${pip[@]}" install torch
    else
        "${pip[@]}" install "torch==2.13.0"
    fi
fi
"${pip[@]}" install -e "$root[$extras]"
