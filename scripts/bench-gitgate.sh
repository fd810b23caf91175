#!/usr/bin/env bash
# Push benchmark of the git gate: a 2,000-commit, ~50 MB history pushed
# through the gate vs straight to an identical loopback upstream, in one run.
# Prints per round and as medians: wall time and CPU time (user + system of
# every process) of both pushes and their ratio, and the gate's phases
# (discovery with the mirror refresh, receive into the mirror, the hook's
# engine build, rev-list, messages, diffs + DLP, upstream push).
#
# Usage: scripts/bench-gitgate.sh [COMMITS] [MB] [ROUNDS]
# RUNS=n repeats the whole benchmark n times (a fresh history each time).
# BASELINE=dir also runs an older build, alternating with this one run by
# run: dir/release/examples/bench_push and dir/release/bottle-gitgate-hook
# (build an older tree with CARGO_TARGET_DIR=dir and the cargo build line
# below).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p bottle-gitgate --bin bottle-gitgate-hook --example bench_push
args=("${1:-2000}" "${2:-50}" "${3:-3}")
for run in $(seq "${RUNS:-1}"); do
  if [ -n "${BASELINE:-}" ]; then
    echo "== run $run: baseline ($BASELINE)"
    "$BASELINE/release/examples/bench_push" "$BASELINE/release/bottle-gitgate-hook" "${args[@]}"
    echo "== run $run: this tree"
  fi
  "$CARGO_TARGET_DIR/release/examples/bench_push" \
    "$CARGO_TARGET_DIR/release/bottle-gitgate-hook" "${args[@]}"
done
