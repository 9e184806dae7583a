#!/usr/bin/env bash
# Set up (or reuse) ./.venv and run the test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" dev
cd "$root"
exec "${VISDOC_VENV:-$root/.venv}/bin/python" -m pytest "$@"
