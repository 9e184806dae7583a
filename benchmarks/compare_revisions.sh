#!/usr/bin/env bash
# Run a benchmark script on an earlier revision and on the working tree (or a second revision),
# alternately, in one run: these machines are noisy, so compare figures measured side by side.
#
#   bash benchmarks/compare_revisions.sh REV ROUNDS SCRIPT [ARGS...]
#   bash benchmarks/compare_revisions.sh 9ec6e19 2 store.py --sizes 1000
#   bash benchmarks/compare_revisions.sh 9ec6e19..8071a6b 1 ingest.py   # two commits
#
# Each revision's own copy of SCRIPT runs with that revision's visdoc first on the path (a
# temporary git worktree); ROUNDS times. Each run's output is printed under a header naming it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
revs="$1" rounds="$2" script="$3"
shift 3
python="${PYTHON:-$root/.venv/bin/python}"
scratch="$(mktemp -d)"
trees=() labels=()
cleanup() {
    for tree in "${trees[@]}"; do
        [ "$tree" = "$root" ] || git -C "$root" worktree remove --force "$tree"
    done
    rm -rf "$scratch"
}
trap cleanup EXIT
for rev in ${revs/../ }; do
    git -C "$root" worktree add --detach --quiet "$scratch/$rev" "$rev"
    trees+=("$scratch/$rev") labels+=("$rev")
done
if [ "${#trees[@]}" = 1 ]; then
    trees+=("$root") labels+=("working tree ($(git -C "$root" rev-parse --short HEAD)+)")
fi
for round in $(seq 1 "$rounds"); do
    for i in "${!trees[@]}"; do
        tree="${trees[$i]}"
        echo "=== round $round: ${labels[$i]}: $script $*"
        (cd "$tree" && PYTHONPATH="$tree/connectors:$tree/integrations" "$python" "benchmarks/$script" "$@")
    done
done
