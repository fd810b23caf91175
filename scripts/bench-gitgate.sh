#!/usr/bin/env bash
# Push benchmark of the git gate: a 2,000-commit, ~50 MB history pushed
# through the gate vs straight to an identical loopback upstream, in one run.
# Usage: scripts/bench-gitgate.sh [COMMITS] [MB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p bottle-gitgate --bin bottle-gitgate-hook --example bench_push
"$CARGO_TARGET_DIR/release/examples/bench_push" \
  "$CARGO_TARGET_DIR/release/bottle-gitgate-hook" "${1:-2000}" "${2:-50}" "${3:-3}"
