#!/usr/bin/env bash
# Set up (or reuse) ./.venv, ingest the bundled sample documents (a 3-page PDF and a page image)
# into the embedded store ./visdoc_data with the model named by VISDOC_MODEL (default
# jinaai/jina-embeddings-v4), then answer a query with the ranked pages. Re-running is cheap:
# unchanged files are not embedded again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" dev
cd "$root"
visdoc="${VISDOC_VENV:-$root/.venv}/bin/visdoc"
"$visdoc" ingest examples/data
"$visdoc" search "${1:-Which quarter had the highest revenue?}" -k 5
