#!/usr/bin/env bash
# Bottle start-up: `start --yes --prompt true` from invocation to exit, with
# images present, against a bare `docker run --rm` of the same agent image,
# in one run; prints each phase from the CLI's progress lines.
# Usage: scripts/bench-start.sh [RUNS]   (BIN=path to a static claude-bottle)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
. scripts/bench-lib.sh
need_bin
scripts/test-base-image
cleanup_floor() { docker rm -f bench-floor-agent bench-floor-side >/dev/null 2>&1 || true; docker network rm bench-floor-int bench-floor-egr >/dev/null 2>&1 || true; }
AT_EXIT+=(cleanup_floor)
bottle_home
image="claude-bottle/agent:$("$BIN" --version | cut -d' ' -f2)"
for i in $(seq "$RUNS"); do
  "$BIN" start bench --yes --prompt true 2>&1 >/dev/null | python3 -c '
import sys, time
t0 = time.time(); marks = []
for line in sys.stdin:
    for k in ["creating networks", "starting the sidecar", "starting the agent", "provisioning", "is up"]:
        if k in line: marks.append((k, time.time() - t0))
print("start  " + "  ".join("%s=%.2f" % (k.split()[-1], v) for k, v in marks) + "  exit=%.2f" % (time.time() - t0))'
  s=$(date +%s.%N); docker run --rm "$image" claude -p true >/dev/null
  echo "docker-run  exit=$(python3 -c "import time; print('%.2f' % (time.time() - $s))")"
  # The engine floor of a bottle's shape, with the docker CLI and nothing
  # of ours: two networks, a container on both, a second one on the
  # internal one using the first as DNS, one exec, removal in order.
  s=$(date +%s.%N)
  docker network create --internal bench-floor-int >/dev/null & docker network create bench-floor-egr >/dev/null; wait
  docker create --name bench-floor-side --init --network bench-floor-int --entrypoint sleep "$image" infinity >/dev/null
  docker network connect bench-floor-egr bench-floor-side
  docker start bench-floor-side >/dev/null
  ip=$(docker inspect -f '{{(index .NetworkSettings.Networks "bench-floor-int").IPAddress}}' bench-floor-side)
  docker run -d --name bench-floor-agent --init --network bench-floor-int --dns "$ip" --entrypoint sleep "$image" infinity >/dev/null
  docker exec bench-floor-agent claude -p true >/dev/null
  docker rm -f bench-floor-agent >/dev/null; docker rm -f bench-floor-side >/dev/null
  docker network rm bench-floor-int bench-floor-egr >/dev/null
  echo "engine-floor  exit=$(python3 -c "import time; print('%.2f' % (time.time() - $s))")"
done
