#!/usr/bin/env bash
# One `start --yes --prompt true` with the engine's own events beside the
# CLI's lines, in milliseconds since the CLI started: where a start's time
# goes, engine step by engine step (docs/benchmarks.md, "Bottle start").
# Usage: BIN=path/to/static/claude-bottle scripts/start-timeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
need_bin
scripts/test-base-image
bottle_home
work=$WORK
docker events --format '{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}}' > "$work/events" & PIDS+=($!)
sleep 0.5
t0=$(date +%s%N)
"$BIN" start bench --yes --prompt true 2>&1 >/dev/null |
  while IFS= read -r l; do echo "$(( ($(date +%s%N) - t0) / 1000000 )) CLI $l"; done > "$work/cli"
t1=$(date +%s%N)
sleep 0.3
echo "total $(( (t1 - t0) / 1000000 )) ms"
# Exec events carry the whole command as the name: keep the first word.
( grep -E '(is up|summary)' "$work/cli" || true
  awk -v t0="$t0" '$1 ~ /^[0-9]+$/ && length($1) == 19 { printf "%d ENG %s %s %s\n", ($1 - t0) / 1000000, $2, $3, $4 }' "$work/events"
) | sort -n
