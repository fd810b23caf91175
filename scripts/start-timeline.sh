#!/usr/bin/env bash
# One `start --yes --prompt true` with the engine's own events beside the
# CLI's lines, in milliseconds since the CLI started: where a start's time
# goes, engine step by engine step (docs/benchmarks.md, "Bottle start").
# Usage: BIN=path/to/static/claude-bottle scripts/start-timeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/claude-bottle}
[ -x "$BIN" ] || { echo "build a static binary first (see README) or set BIN" >&2; exit 2; }
scripts/test-base-image
work=$(mktemp -d)
ev=""
cleanup() { [ -n "$ev" ] && kill "$ev" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/.claude-bottle/bottles" "$work/.claude-bottle/agents"
printf -- '---\negress:\n  allow:\n    - host: allowed.test\n---\n' > "$work/.claude-bottle/bottles/bench.md"
printf -- '---\nbottle: bench\n---\nBenchmark.\n' > "$work/.claude-bottle/agents/bench.md"
export HOME=$work CLAUDE_BOTTLE_BASE_IMAGE=claude-bottle-test/agent-base:bookworm
"$BIN" build >/dev/null 2>&1
docker events --format '{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}}' > "$work/events" &
ev=$!
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
