#!/usr/bin/env bash
# Egress proxy benchmark: requests/s and latency through the proxy vs direct
# to the same loopback nginx, and vs tinyproxy (and mitmproxy when
# installed), plain HTTP, keep-alive and not. Loopback only.
#
#   scripts/bench-proxy.sh            # needs: nginx, wrk, tinyproxy (apt), cargo
#   DURATION=10s CONNS=32 scripts/bench-proxy.sh
#   BASELINE_BIN=/tmp/egress-proxy-old scripts/bench-proxy.sh
#     # also runs an older build of the example, alternating with this one
#
# Prints a markdown table; paste it into docs/benchmarks.md.
set -euo pipefail

DURATION=${DURATION:-10s}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/bench-lib.sh"
need nginx nginx-light; need wrk wrk; need tinyproxy tinyproxy

NGINX_PORT=18080 PROXY_PORT=18081 TINY_PORT=18082 MITM_PORT=18083 BASE_PORT=18084 RELAY_PORT=18085
BASELINE_BIN=${BASELINE_BIN:-}

# Upstream: nginx answering a small body with keep-alive.
start_nginx "server { listen 127.0.0.1:$NGINX_PORT; location / { return 200 \"hello from upstream\\n\"; } }"

# Reference floor: a second nginx as a bare keep-alive relay (no allowlist,
# no DLP, pooled upstream connections), i.e. what a tuned C relay with
# nothing to check costs on this machine. Two workers, as our proxy has two
# runtime threads.
start_nginx "upstream backend { server 127.0.0.1:$NGINX_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$RELAY_PORT;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }
  }" relay 2

# Our proxy: allow the bench host (pinned to loopback), DLP on with a known secret.
cargo build --release -q -p bottle-egress --example egress-proxy
egress_proxy_config $PROXY_PORT "allow: [{host: bench.test, ports: [$NGINX_PORT]}]
resolve: {bench.test: 127.0.0.1}"
run_egress_proxy "$TARGET/release/examples/egress-proxy" proxy
PROXY_PID=$LAST_PID
if [ -n "$BASELINE_BIN" ]; then
  run_egress_proxy "$BASELINE_BIN" 127.0.0.1:$BASE_PORT base
fi

cat > "$WORK/tinyproxy.conf" <<TP
Port $TINY_PORT
Listen 127.0.0.1
Timeout 600
MaxClients 1024
LogLevel Critical
DisableViaHeader Yes
TP
tinyproxy -d -c "$WORK/tinyproxy.conf" >/dev/null 2>&1 & PIDS+=($!)

if command -v mitmdump >/dev/null; then
  mitmdump --listen-host 127.0.0.1 -p $MITM_PORT -q >/dev/null 2>&1 & PIDS+=($!)
fi

wait_ports $NGINX_PORT $PROXY_PORT $TINY_PORT $RELAY_PORT ${BASELINE_BIN:+$BASE_PORT}
sleep 1
IDLE_RSS=$(ps -o rss= -p "$PROXY_PID" | tr -d ' ')

# wrk sends `path` verbatim: an absolute-form path makes it talk proxy protocol.
cat > "$WORK/proxy.lua" <<'LUA'
local target = os.getenv("TARGET_URL")
request = function() return wrk.format("GET", target) end
LUA
cat > "$WORK/close.lua" <<'LUA'
local target = os.getenv("TARGET_URL")
request = function() return wrk.format("GET", target, {["Connection"] = "close"}) end
LUA

run() { # name port url script
  local out
  out=$(TARGET_URL="$3" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/$4" "http://127.0.0.1:$2/" 2>&1)
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$1|$rps|$p50|$p99"
}
lat1() { # single-connection p50 for added latency
  TARGET_URL="$3" wrk -t1 -c1 -d"$DURATION" --latency -s "$WORK/proxy.lua" "http://127.0.0.1:$2/" 2>&1 | awk '$1=="50%" {print $2}'
}

DIRECT_URL="/"
PROXIED_URL="http://bench.test:$NGINX_PORT/"
OTHER_URL="http://127.0.0.1:$NGINX_PORT/"

echo "| job | req/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
for mode in proxy.lua close.lua; do
  label=$([ "$mode" = proxy.lua ] && echo keep-alive || echo close)
  IFS='|' read -r n r a b <<<"$(run "direct ($label)" $NGINX_PORT "$DIRECT_URL" "$mode")"; echo "| $n | $r | $a | $b |"; D=$r
  IFS='|' read -r n r a b <<<"$(run "claude-bottle proxy ($label)" $PROXY_PORT "$PROXIED_URL" "$mode")"; echo "| $n | $r | $a | $b |"; P=$r
  if [ -n "$BASELINE_BIN" ]; then
    IFS='|' read -r n r a b <<<"$(run "baseline proxy ($label)" $BASE_PORT "$PROXIED_URL" "$mode")"; echo "| $n | $r | $a | $b |"; B=$r
  else B=""; fi
  IFS='|' read -r n r a b <<<"$(run "nginx relay, no checks ($label)" $RELAY_PORT "$PROXIED_URL" "$mode")"; echo "| $n | $r | $a | $b |"; R=$r
  IFS='|' read -r n r a b <<<"$(run "tinyproxy ($label)" $TINY_PORT "$OTHER_URL" "$mode")"; echo "| $n | $r | $a | $b |"; T=$r
  if command -v mitmdump >/dev/null; then
    IFS='|' read -r n r a b <<<"$(run "mitmproxy ($label)" $MITM_PORT "$OTHER_URL" "$mode")"; echo "| $n | $r | $a | $b |"; M=$r
  else M=""; fi
  echo "| ratio proxy/direct ($label) | $(awk -v p="$P" -v d="$D" 'BEGIN{printf "%.2f", p/d}') | | |"
  echo "| ratio nginx relay/direct ($label) | $(awk -v r="$R" -v d="$D" 'BEGIN{printf "%.2f", r/d}') | | |"
  echo "| ratio proxy/tinyproxy ($label) | $(awk -v p="$P" -v t="$T" 'BEGIN{printf "%.2f", p/t}') | | |"
  echo "| ratio tinyproxy/direct ($label) | $(awk -v t="$T" -v d="$D" 'BEGIN{printf "%.2f", t/d}') | | |"
  [ -n "$M" ] && echo "| ratio proxy/mitmproxy ($label) | $(awk -v p="$P" -v m="$M" 'BEGIN{printf "%.2f", p/m}') | | |"
  [ -n "$B" ] && echo "| ratio baseline/direct ($label) | $(awk -v b="$B" -v d="$D" 'BEGIN{printf "%.2f", b/d}') | | |"
  [ -n "$B" ] && echo "| ratio baseline/tinyproxy ($label) | $(awk -v b="$B" -v t="$T" 'BEGIN{printf "%.2f", b/t}') | | |"
done
echo
echo "single connection p50: direct $(lat1 d $NGINX_PORT "$DIRECT_URL"), proxy $(lat1 p $PROXY_PORT "$PROXIED_URL"), nginx relay $(lat1 r $RELAY_PORT "$PROXIED_URL")${BASELINE_BIN:+, baseline $(lat1 b $BASE_PORT "$PROXIED_URL")}"
echo "proxy RSS: idle ${IDLE_RSS} KiB, after load $(ps -o rss= -p "$PROXY_PID" | tr -d ' ') KiB"
