#!/usr/bin/env bash
# Regression check: the criterion suite against a saved baseline.
#
#   benches/compare.sh --save NAME   # run the suite, keep its results as baseline NAME
#   benches/compare.sh NAME          # run it again, compare with NAME; exit 1 on a regression
#   benches/compare.sh --rev REV     # baseline = REV (a commit) built in a worktree, then compare HEAD
#
# A benchmark has regressed when criterion finds it slower beyond the noise
# threshold (THRESHOLD, default 0.10 = 10 %: the 2-core VMs here vary by
# up to ±25 % between runs, so small changes are noise) with p < 0.05.
# BENCHES picks the suites (default: pipeline scoring state inference;
# inference needs target/model-matrix, see README "Model inference").
# Baselines live under target/criterion/, on the machine that made them:
# compare on the same machine only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
THRESHOLD=${THRESHOLD:-0.10}
read -r -a SUITES <<<"${BENCHES:-pipeline scoring state inference}"

run_suite() { # dir mode name -> log on stdout
    local dir=$1 mode=$2 name=$3 b
    for b in "${SUITES[@]}"; do
        (cd "$dir" && CARGO_TARGET_DIR=$ROOT/target cargo bench --locked --bench "$b" -- \
            "$mode" "$name" --noise-threshold "$THRESHOLD" 2>&1)
    done
}

case "${1:-}" in
    --save)
        [ -n "${2:-}" ] || { echo "usage: $0 --save NAME" >&2; exit 2; }
        run_suite "$ROOT" --save-baseline "$2" | grep -E '^[a-z_]+/|time:|thrpt:' || true
        echo "saved baseline $2 (target/criterion/*/$2)"
        exit 0
        ;;
    --rev)
        [ -n "${2:-}" ] || { echo "usage: $0 --rev REV" >&2; exit 2; }
        rev=$(git rev-parse --short "$2")
        wt=$ROOT/target/compare-worktree
        git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
        git worktree add --detach "$wt" "$rev" >/dev/null
        echo "baseline: $rev (in $wt)"
        run_suite "$wt" --save-baseline "rev-$rev" >/dev/null
        git worktree remove --force "$wt"
        name=rev-$rev
        ;;
    ""|-h|--help)
        sed -n '2,15p' "$0"; exit 2 ;;
    *) name=$1 ;;
esac

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_suite "$ROOT" --baseline "$name" | tee "$log" | grep -E '^[a-z_]+/|change:|regressed|improved' || true
# criterion prints the benchmark's id on its own line (it may hold spaces:
# "state/checkpoint 10000 devices (all changed)"), then indented
# time/thrpt/change lines.
regressed=$(awk '/^[a-z_]+\// { id = $0; sub(/ +time:.*/, "", id) } /Performance has regressed/ { print "  " id }' "$log")
if [ -n "$regressed" ]; then
    echo
    echo "regressed against $name (beyond ${THRESHOLD} noise, p < 0.05):"
    printf '%s\n' "$regressed"
    exit 1
fi
echo
echo "no regression against $name"
