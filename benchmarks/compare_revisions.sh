#!/usr/bin/env bash
# Run a benchmark script on an earlier revision and on the working tree, alternately, in one run
# (these machines are noisy: compare figures measured side by side, not against old records).
#
#   bash benchmarks/compare_revisions.sh REV ROUNDS SCRIPT [ARGS...]
#   bash benchmarks/compare_revisions.sh 9ec6e19 2 store.py --pages 1000
#
# REV's own copy of SCRIPT runs with REV's visdoc first on the path (a temporary git worktree),
# then the working tree's; ROUNDS times. Each run's output is printed under a header naming it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rev="$1" rounds="$2" script="$3"
shift 3
python="${PYTHON:-$root/.venv/bin/python}"
old="$(mktemp -d)/visdoc-$rev"
git -C "$root" worktree add --detach --quiet "$old" "$rev"
trap 'git -C "$root" worktree remove --force "$old"' EXIT
for round in $(seq 1 "$rounds"); do
    for tree in "$old" "$root"; do
        label="$rev"
        [ "$tree" = "$root" ] && label="working tree ($(git -C "$root" rev-parse --short HEAD)+)"
        echo "=== round $round: $label: $script $*"
        (cd "$tree" && PYTHONPATH="$tree/connectors:$tree/integrations" "$python" "benchmarks/$script" "$@")
    done
done
