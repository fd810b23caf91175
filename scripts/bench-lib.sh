# Shared by the benchmark scripts (sourced, not run): a work folder and the
# processes to stop when the script ends, tool checks, a loopback nginx,
# waiting for ports, and a throw-away bottle home for the start benchmarks.

WORK=$(mktemp -d)
PIDS=()
# Extra clean-up a script adds (engine objects, say): `AT_EXIT+=(fn)`.
AT_EXIT=()
bench_cleanup() {
  local f p
  for f in "${AT_EXIT[@]}"; do "$f" || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# Load shape and build folder shared by the proxy benchmarks (ROOT is set
# by the script that sources this file).
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
TARGET=${CARGO_TARGET_DIR:-${ROOT:-.}/target}

# The known secret the proxy benchmarks scan for: every URL and header is
# checked against it, as in a bottle.
BENCH_SECRET_VALUE=bench-secret-value-123

# egress_proxy_config PORT ROUTE-YAML: $WORK/proxy.yaml listening on PORT
# with the given lines (allow, resolve, ...), `dlp: block` with the bench's
# known secret and `log: off`.
egress_proxy_config() {
  printf 'listen: 127.0.0.1:%s\n%s\ndlp: block\nlog: off\nknown_secret_env: [BENCH_SECRET]\n' \
    "$1" "$2" > "$WORK/proxy.yaml"
}

# run_egress_proxy BIN [LISTEN] NAME: BIN (the example, or an older build of
# it) on $WORK/proxy.yaml, stderr to $WORK/NAME.err; sets LAST_PID.
run_egress_proxy() {
  local bin=$1 name=${@: -1}
  local listen=()
  [ $# -eq 3 ] && listen=("$2")
  BENCH_SECRET=$BENCH_SECRET_VALUE "$bin" "$WORK/proxy.yaml" "${listen[@]}" 2>"$WORK/$name.err" & PIDS+=($!)
  LAST_PID=$!
}

# need COMMAND DEBIAN-PACKAGE
need() { command -v "$1" >/dev/null || { echo "missing $1 (apt-get install $2)" >&2; exit 1; }; }

# start_nginx SERVER-BLOCK [NAME] [WORKERS]: nginx (one worker unless
# told) with keep-alive without limit and the given `server { ... }`
# block (plus any `upstream` blocks before it); sets NGINX_PID. NAME
# (default nginx) names its files in $WORK, for a second instance.
start_nginx() {
  local name=${2:-nginx}
  cat > "$WORK/$name.conf" <<NG
worker_processes ${3:-1};
daemon off;
pid $WORK/$name.pid;
error_log $WORK/$name.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  $1
}
NG
  nginx -c "$WORK/$name.conf" -p "$WORK" & PIDS+=($!)
  NGINX_PID=$!
}

# wait_ports PORT...: until each loopback port accepts (10 s each at most).
wait_ports() {
  local port
  for port in "$@"; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  done
}

# bottle_home [BOTTLE-EXTRA-YAML]: $WORK as HOME with a bottle `bench`
# allowing allowed.test and an agent `bench` of it, the test base image as
# the build base; builds the images with $BIN.
bottle_home() {
  mkdir -p "$WORK/.claude-bottle/bottles" "$WORK/.claude-bottle/agents"
  printf -- '---\negress:\n  allow:\n    - host: allowed.test\n%b---\n' "${1:-}" > "$WORK/.claude-bottle/bottles/bench.md"
  printf -- '---\nbottle: bench\n---\nBenchmark.\n' > "$WORK/.claude-bottle/agents/bench.md"
  export HOME=$WORK CLAUDE_BOTTLE_BASE_IMAGE=claude-bottle-test/agent-base:bookworm
  "$BIN" build >/dev/null 2>&1
}

# need_bin: $BIN (default: the static release build) must exist.
need_bin() {
  BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/claude-bottle}
  [ -x "$BIN" ] || { echo "build a static binary first (see README) or set BIN" >&2; exit 2; }
}
