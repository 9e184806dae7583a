#!/usr/bin/env bash
# One GPU check of visdoc, in one go, under 8 minutes (each step has its own timeout).
#
# The machine must have: an NVIDIA GPU (an H100/H200 is what the figures in docs/ compare with)
# with nvidia-smi, torch built with CUDA, and visdoc installed with its dependencies
# (transformers, qdrant-edge-py, pymupdf) in $VISDOC_VENV (default ./.venv) or on the python
# found first (run from the repository root). Nothing outside the machine is needed.
#
# Steps: checks (fail fast, saying what is missing), the card's name, the tests that run on CUDA
# when it is there (the tiny fixture's fidelity, GPU-path and fast-path tests), the throughput
# benchmark on its default paths, then the ingestion benchmark with the full-size random model.
# Every figure goes to $OUT/device-check.txt when $OUT is set, else ./device-check-results.txt.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VISDOC_VENV:-$root/.venv}"
python="$venv/bin/python"
[ -x "$python" ] || python="$(command -v python3 || command -v python || true)"
results="${OUT:+$OUT/device-check.txt}"
results="${results:-$root/device-check-results.txt}"
: >"$results"

say() { echo "$*" | tee -a "$results"; }
fail() { say "device-check: $*"; exit 2; }

# -- checks: nothing runs unless all of them pass --------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 || fail "no nvidia-smi: this check needs an NVIDIA GPU with its driver (CUDA)"
[ -n "$python" ] || fail "no python found: set VISDOC_VENV to the virtual environment with visdoc"
"$python" - <<'PY' 2>&1 | tee -a "$results"
import importlib.util, sys
missing = [name for name, module in (("torch", "torch"), ("visdoc", "visdoc"), ("transformers", "transformers"),
           ("qdrant-edge-py", "qdrant_edge"), ("pymupdf", "pymupdf")) if importlib.util.find_spec(module) is None]
if missing:
    sys.exit(f"device-check: not installed: {', '.join(missing)}")
import torch
major, minor = (int(part) for part in torch.__version__.split(".")[:2])
if (major, minor) < (2, 9):
    sys.exit(f"device-check: torch {torch.__version__} is older than 2.9 (the varlen kernel needs it)")
if not torch.cuda.is_available():
    sys.exit(f"device-check: torch {torch.__version__} sees no CUDA device (CUDA build: {torch.version.cuda})")
import transformers, visdoc
print(f"card: {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory >> 30} GiB)")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}")
PY
[ "${PIPESTATUS[0]}" = 0 ] || exit 2

step() {  # step SECONDS TITLE COMMAND...: run one step under a timeout, its output into the results
    local seconds="$1" title="$2"
    shift 2
    say ""
    say "== $title (at most ${seconds} s)"
    local began=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$results"
    local status="${PIPESTATUS[0]}"
    [ "$status" = 124 ] || [ "$status" = 137 ] && say "-- timed out after ${seconds} s (what it printed is above)"
    say "-- exit status $status, $((SECONDS - began)) s"
}

step 130 "CUDA tests" "$python" -m pytest -q -x -p no:cacheprovider tests/test_fast_path.py tests/test_gpu_path.py \
    tests/test_fidelity.py
step 150 "benchmarks/gpu_throughput.py (default paths)" "$python" benchmarks/gpu_throughput.py --budget 100
step 170 "benchmarks/ingest.py --full --pages 2400 --compare-writes (merged, compiled)" "$python" benchmarks/ingest.py \
    --full --pages 2400 --compare-writes --merge-adapters --compile
say ""
say "results in $results"
