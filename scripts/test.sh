#!/usr/bin/env bash
# Set up (or reuse) ./.venv, lint with ruff and run the test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" dev
# The browser tests drive Debian's chromium through Playwright (which never downloads a browser here).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
cd "$root"
venv="${VISDOC_VENV:-$root/.venv}"
"$venv/bin/ruff" check --quiet .
exec "$venv/bin/python" -m pytest "$@"
