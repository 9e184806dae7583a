#!/usr/bin/env bash
# Set up (or reuse) ./.venv, then embed the bundled sample page and a query with the model
# named by VISDOC_MODEL (default jinaai/jina-embeddings-v4) and print their similarity.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh" dev
cd "$root"
exec "${VISDOC_VENV:-$root/.venv}/bin/visdoc" similarity \
    "${1:-What was the revenue in the third quarter?}" examples/data/sample-page.png
