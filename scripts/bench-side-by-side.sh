#!/usr/bin/env bash
# Bottles side by side: start N bottles at once (N agents of one bottle),
# each running `sleep HOLD` so all are up together, and count how many
# came up, ran and exited 0; then check nothing is left. Repeats with
# larger N until one fails or MAX is reached.
# Usage: scripts/bench-side-by-side.sh [MAX] [HOLD]   (BIN=static claude-bottle,
# SIZES="2 4 8" to choose the rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
MAX=${1:-12}
HOLD=${2:-20}
. scripts/bench-lib.sh
need_bin
scripts/test-base-image >/dev/null
export CLAUDE_BOTTLE_TEST_LABEL=side-by-side-$$
bottle_home 'resources: {memory: 512m, cpus: 1, pids: 256}\n'
work=$WORK
for n in ${SIZES:-2 4 6 8 10 12 16 20 24}; do
  [ "$n" -le "$MAX" ] || break
  for i in $(seq "$n"); do
    printf -- '---\nbottle: bench\n---\nBenchmark.\n' > "$work/.claude-bottle/agents/sbs-$i.md"
  done
  start=$(date +%s.%N)
  for i in $(seq "$n"); do
    ( rc=0; "$BIN" start "sbs-$i" --yes --prompt "sleep $HOLD; echo ran" > "$work/out-$i" 2> "$work/err-$i" || rc=$?
      echo $rc > "$work/rc-$i" ) &
  done
  # The peak: how many agents ran at once, sampled while they hold.
  peak=0
  for _ in $(seq $((HOLD * 2))); do
    up=$(docker ps -q --filter "label=io.claude-bottle.test=$CLAUDE_BOTTLE_TEST_LABEL" --filter label=io.claude-bottle.role=agent | wc -l)
    [ "$up" -gt "$peak" ] && peak=$up
    sleep 0.5
  done
  wait
  ok=0
  for i in $(seq "$n"); do
    if [ "$(cat "$work/rc-$i")" = 0 ] && grep -q '^ran$' "$work/out-$i"; then ok=$((ok + 1)); else
      echo "  bottle $i failed: $(grep -m1 -E '^(error|Error)' "$work/err-$i" | cut -c1-300)"; fi
  done
  took=$(python3 -c "import time; print('%.1f' % (time.time() - $start))")
  left=$(docker ps -aq --filter "label=io.claude-bottle.test=$CLAUDE_BOTTLE_TEST_LABEL" | wc -l)
  echo "n=$n  ok=$ok  peak agents running at once=$peak  wall=${took}s  left=$left  load=$(cut -d' ' -f1 /proc/loadavg)"
  [ "$ok" = "$n" ] || break
done
