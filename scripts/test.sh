#!/usr/bin/env bash
# Set up (or reuse) ./.venv, lint with ruff and run the test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" dev
cd "$root"
venv="${VISDOC_VENV:-$root/.venv}"
"$venv/bin/ruff" check --quiet .
exec "$venv/bin/python" -m pytest "$@"
