#!/usr/bin/env bash
# Intercepted-HTTPS benchmark: requests/s and latency of HTTPS to a loopback
# nginx, straight and through CONNECT tunnels that the proxy intercepts
# (TLS terminated with its CA, inner Host/SNI checked, DLP, TLS again to
# nginx), and through mitmproxy doing the same job when installed.
# Keep-alive and a new connection per request, plus 1-connection runs for
# the added latency. Loopback only. The load generator is
# crates/bottle-egress/examples/https-load.rs (wrk cannot CONNECT).
#
#   scripts/bench-proxy-https.sh      # needs: nginx, openssl, curl (apt), cargo
#   DURATION=5 CONNS=32 RUNS=3 scripts/bench-proxy-https.sh
#   MITMDUMP=/tmp/mitm/bin/mitmdump scripts/bench-proxy-https.sh
#     # mitmproxy: python3 -m venv /tmp/mitm && /tmp/mitm/bin/pip install mitmproxy
#
# Prints a markdown table per run and the medians; paste into docs/benchmarks.md.
set -euo pipefail

DURATION=${DURATION:-10}
DURATION=${DURATION%s}
RUNS=${RUNS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/bench-lib.sh"
need nginx nginx-light; need openssl openssl; need curl curl
MITMDUMP=${MITMDUMP:-$(command -v mitmdump || true)}

NGINX_PORT=18443 PROXY_PORT=18091 TOKEN_PORT=18092 MITM_PORT=18093
HOST=bench.test

# Upstream certificates: a test CA and a leaf for the routed name, both
# ECDSA P-256 (as the proxy's own leaves).
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$WORK/up-ca.key" -out "$WORK/up-ca.pem" -days 2 -subj "/CN=bench upstream CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" -subj "/CN=$HOST" 2>/dev/null
printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
  "$HOST" > "$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/up-ca.pem" -CAkey "$WORK/up-ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null

# Upstream: nginx answering a small body over TLS with keep-alive.
start_nginx "server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $WORK/leaf.pem;
    ssl_certificate_key $WORK/leaf.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 \"hello from upstream\\n\"; }
  }"

# Our proxy: an intercepted route for the bench host on 443, pinned to
# nginx's port, nginx's CA trusted upstream, DLP on with a known secret.
# The proxy makes its own CA (as in a bottle); the client fetches /ca.pem.
cargo build --release -q -p bottle-egress --example egress-proxy --example https-load
LOAD="$TARGET/release/examples/https-load"
egress_proxy_config $PROXY_PORT "allow: [{host: $HOST, ports: [443], tls: intercept}]
resolve: {$HOST: \"127.0.0.1:$NGINX_PORT\"}
upstream_ca: $WORK/up-ca.pem"
run_egress_proxy "$TARGET/release/examples/egress-proxy" proxy
PROXY_PID=$LAST_PID
# The same proxy with an `http` token for the route: each request gets the
# credential, and each response is searched for it as it streams (the
# echo mask, docs/egress.md).
sed -e "s/^listen: .*/listen: 127.0.0.1:$TOKEN_PORT/" "$WORK/proxy.yaml" > "$WORK/proxy-token.yaml"
printf 'tokens: [{kind: http, host: %s, scheme: Bearer, token_ref: BENCH_TOKEN}]\n' "$HOST" >> "$WORK/proxy-token.yaml"
BENCH_TOKEN=ghp_BenchBenchBenchBenchBenchBench1234 BENCH_SECRET=$BENCH_SECRET_VALUE \
  "$TARGET/release/examples/egress-proxy" "$WORK/proxy-token.yaml" 2>"$WORK/proxy-token.err" & PIDS+=($!)
TOKEN_PID=$!

# mitmproxy: it has no resolve table, so its CONNECT names nginx's address
# while SNI and Host stay bench.test; it verifies nginx against the test CA.
MITM_PID=
if [ -n "$MITMDUMP" ]; then
  mkdir -p "$WORK/mitm"
  "$MITMDUMP" --listen-host 127.0.0.1 -p $MITM_PORT -q --set confdir="$WORK/mitm" \
    --set ssl_verify_upstream_trusted_ca="$WORK/up-ca.pem" >"$WORK/mitm.log" 2>&1 & PIDS+=($!)
  MITM_PID=$!
fi

wait_ports $NGINX_PORT $PROXY_PORT $TOKEN_PORT ${MITM_PID:+$MITM_PORT}
curl -sf "http://127.0.0.1:$PROXY_PORT/ca.pem" > "$WORK/proxy-ca.pem"
curl -sf "http://127.0.0.1:$TOKEN_PORT/ca.pem" > "$WORK/token-ca.pem"
if [ -n "$MITM_PID" ]; then
  for _ in $(seq 100); do [ -s "$WORK/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done
fi
sleep 1
IDLE_RSS=$(ps -o rss= -p "$PROXY_PID" | tr -d ' ')

DIRECT=(--connect 127.0.0.1:$NGINX_PORT --ca "$WORK/up-ca.pem")
PROXY=(--proxy 127.0.0.1:$PROXY_PORT --ca "$WORK/proxy-ca.pem")
TOKEN=(--proxy 127.0.0.1:$TOKEN_PORT --ca "$WORK/token-ca.pem")
MITM=(--proxy 127.0.0.1:$MITM_PORT --tunnel-to 127.0.0.1:$NGINX_PORT --ca "$WORK/mitm/mitmproxy-ca-cert.pem")

# CPU time (user + system, clock ticks of 10 ms) of a process and its children.
ticks() {
  local t=0 p
  for p in "$@" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$t"
}
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }
us() { awk -v u="$1" 'BEGIN { if (u >= 1000) printf "%.2fms", u / 1000; else printf "%dus", u }'; }
per_req() { awk -v t="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", t * 10000 / n; else print "-" }'; }

# Sanity: one request each way must succeed, or the numbers mean nothing.
for via in DIRECT PROXY TOKEN ${MITM_PID:+MITM}; do
  declare -n args=$via
  out=$("$LOAD" --target $HOST:443 --conns 1 --duration 0.5 "${args[@]}" 2>&1 | tail -1)
  if [ "$(field requests "$out")" = 0 ] || [ "$(field errors "$out")" != 0 ]; then
    echo "sanity check $via failed: $("$LOAD" --target $HOST:443 --conns 1 --duration 0.3 "${args[@]}" 2>&1)" >&2
    exit 1
  fi
done
# The proxy does scan: a known secret in the inner URL is refused.
out=$("$LOAD" --target $HOST:443 --conns 1 --duration 0.3 --path "/?k=$BENCH_SECRET_VALUE" "${PROXY[@]}" 2>&1 | tail -1)
if [ "$(field requests "$out")" != 0 ] || [ "$(field errors "$out")" = 0 ]; then
  echo "sanity check: the proxy let a known secret through ($out)" >&2; exit 1
fi

RESULTS=$WORK/results.tsv
: > "$RESULTS"
job() { # run label mode conns server-pid args-array
  local run=$1 label=$2 mode=$3 conns=$4 spid=$5; declare -n a=$6
  local s0 n0 s1 n1 out
  s0=$(ticks "$spid"); n0=$(ticks "$NGINX_PID")
  out=$("$LOAD" --target $HOST:443 --label x --mode "$mode" --conns "$conns" --duration "$DURATION" \
    --threads "$THREADS" "${a[@]}" 2>>"$WORK/load.err")
  s1=$(ticks "$spid"); n1=$(ticks "$NGINX_PID")
  local req rps p50 p99 err hs res cpu scpu ncpu
  req=$(field requests "$out"); rps=$(field rps "$out"); p50=$(field p50_us "$out"); p99=$(field p99_us "$out")
  err=$(field errors "$out"); hs=$(field handshakes "$out"); res=$(field resumed "$out"); cpu=$(field cpu_ms "$out")
  ncpu=$(per_req $((n1 - n0)) "$req")
  if [ "$spid" = "$NGINX_PID" ]; then scpu="-"; else scpu=$(per_req $((s1 - s0)) "$req"); fi
  local ccpu
  ccpu=$(awk -v t="$cpu" -v n="$req" 'BEGIN { if (n > 0) printf "%.1f", t * 1000 / n; else print "-" }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$label" "$rps" "$p50" "$p99" "$err" "$hs" "$res" "$ccpu" "$ncpu" "$scpu" >> "$RESULTS"
  echo "| $label | $rps | $(us "$p50") | $(us "$p99") | $err | $res/$hs | $ccpu | $ncpu | $scpu |"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
rps_of() { awk -F'\t' -v r="$1" -v l="$2" '$1 == r && $2 == l {print $3}' "$RESULTS"; }
p50_of() { awk -F'\t' -v r="$1" -v l="$2" '$1 == r && $2 == l {print $4}' "$RESULTS"; }

for run in $(seq "$RUNS"); do
  echo
  echo "run $run of $RUNS, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| job | req/s | p50 | p99 | errors | resumed/handshakes | client CPU µs/req | nginx CPU µs/req | proxy CPU µs/req |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for mode in keepalive close; do
    job "$run" "direct ($mode)" $mode "$CONNS" "$NGINX_PID" DIRECT
    job "$run" "claude-bottle proxy ($mode)" $mode "$CONNS" "$PROXY_PID" PROXY
    job "$run" "claude-bottle proxy, token injected ($mode)" $mode "$CONNS" "$TOKEN_PID" TOKEN
    if [ -n "$MITM_PID" ]; then job "$run" "mitmproxy ($mode)" $mode "$CONNS" "$MITM_PID" MITM; fi
  done
  for mode in keepalive close; do
    job "$run" "direct (1 conn, $mode)" $mode 1 "$NGINX_PID" DIRECT
    job "$run" "claude-bottle proxy (1 conn, $mode)" $mode 1 "$PROXY_PID" PROXY
    if [ -n "$MITM_PID" ]; then job "$run" "mitmproxy (1 conn, $mode)" $mode 1 "$MITM_PID" MITM; fi
  done
  for mode in keepalive close; do
    D=$(rps_of "$run" "direct ($mode)"); P=$(rps_of "$run" "claude-bottle proxy ($mode)")
    printf '%s\tratio proxy/direct (%s)\t%s\n' "$run" "$mode" "$(ratio "$P" "$D")" >> "$RESULTS"
    echo "| ratio proxy/direct ($mode) | $(ratio "$P" "$D") | | | | | | | |"
    T=$(rps_of "$run" "claude-bottle proxy, token injected ($mode)")
    printf '%s\tratio token/no token (%s)\t%s\n' "$run" "$mode" "$(ratio "$T" "$P")" >> "$RESULTS"
    echo "| ratio token injected/no token ($mode) | $(ratio "$T" "$P") | | | | | | | |"
    if [ -n "$MITM_PID" ]; then
      M=$(rps_of "$run" "mitmproxy ($mode)")
      printf '%s\tratio mitmproxy/direct (%s)\t%s\n' "$run" "$mode" "$(ratio "$M" "$D")" >> "$RESULTS"
      printf '%s\tratio proxy/mitmproxy (%s)\t%s\n' "$run" "$mode" "$(ratio "$P" "$M")" >> "$RESULTS"
      echo "| ratio mitmproxy/direct ($mode) | $(ratio "$M" "$D") | | | | | | | |"
      echo "| ratio proxy/mitmproxy ($mode) | $(ratio "$P" "$M") | | | | | | | |"
    fi
    DP=$(p50_of "$run" "direct (1 conn, $mode)"); PP=$(p50_of "$run" "claude-bottle proxy (1 conn, $mode)")
    printf '%s\tadded p50 proxy (1 conn, %s)\t%s\n' "$run" "$mode" $((PP - DP)) >> "$RESULTS"
    echo "| added p50, proxy, 1 connection ($mode) | | $(us $((PP - DP))) | | | | | | |"
    if [ -n "$MITM_PID" ]; then
      MP=$(p50_of "$run" "mitmproxy (1 conn, $mode)")
      printf '%s\tadded p50 mitmproxy (1 conn, %s)\t%s\n' "$run" "$mode" $((MP - DP)) >> "$RESULTS"
      echo "| added p50, mitmproxy, 1 connection ($mode) | | $(us $((MP - DP))) | | | | | | |"
    fi
  done
  echo
  echo "load average after run $run: $(cut -d' ' -f1-3 /proc/loadavg)"
done

# Medians over the runs, per job (req/s, p50, p99, CPU per request) and ratio.
median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "medians of $RUNS run(s) (per-run values in brackets):"
echo
echo "| job | req/s | p50 | p99 | client CPU µs/req | nginx CPU µs/req | proxy CPU µs/req |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
cut -f2 "$RESULTS" | awk '!seen[$0]++' | while IFS= read -r label; do
  col() { awk -F'\t' -v l="$label" -v c="$1" '$2 == l {print $c}' "$RESULTS"; }
  runs() { col "$1" | paste -sd, - | sed 's/,/, /g'; }
  case "$label" in
    ratio*) echo "| $label | $(col 3 | median) ($(runs 3)) | | | | | |" ;;
    added*) echo "| $label | | $(us "$(col 3 | median)") ($(col 3 | paste -sd, - | sed 's/,/, /g') us) | | | | |" ;;
    *) echo "| $label | $(col 3 | median) ($(runs 3)) | $(us "$(col 4 | median)") | $(us "$(col 5 | median)") | $(col 9 | median) | $(col 10 | median) | $(col 11 | grep -v '^-$' | median) |" ;;
  esac
done
echo
echo "proxy RSS: idle ${IDLE_RSS} KiB, after load $(ps -o rss= -p "$PROXY_PID" | tr -d ' ') KiB${MITM_PID:+; mitmdump RSS after load $(ps -o rss= -p "$MITM_PID" | tr -d ' ') KiB}"
if [ -s "$WORK/load.err" ]; then
  echo; echo "load generator errors (first lines):"; sort "$WORK/load.err" | uniq -c | sort -rn | head -5
fi
