#!/usr/bin/env bash
# DLP benchmark: `claude-bottle scan` against detect-secrets (PyPI) and
# ripsecrets (crates.io) on the same corpora, in one run, each pinned to one
# core. Builds the corpora from source text already on the machine (see
# bench/dlp/make_corpus.py), prints MB/s, ratios, peak memory and the
# findings of each tool on a corpus seeded with 200 fake secrets.
#
#   scripts/bench-dlp.sh            # defaults below
#   DLP_BENCH_MIB=64 DLP_COMPARE_MIB=8 scripts/bench-dlp.sh
#
# Results go to docs/benchmarks.md by hand: this machine is shared and noisy,
# so record the ratios of one run, not a single absolute number.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${DLP_BENCH_DIR:-/tmp/dlp-bench}
size=${DLP_BENCH_MIB:-32}       # clean corpus for claude-bottle and ripsecrets
compare=${DLP_COMPARE_MIB:-8}   # subset all three scan (detect-secrets is slow)
core=${DLP_BENCH_CORE:-0}
bin=${DLP_SCAN_BIN:-${CARGO_TARGET_DIR:-target}/release/claude-bottle}

if [ -z "${DLP_SCAN_BIN:-}" ]; then
  cargo build --release -p claude-bottle
fi
command -v detect-secrets >/dev/null || pip install --quiet detect-secrets
rip=$(command -v ripsecrets || echo "$HOME/.cargo/bin/ripsecrets")
[ -x "$rip" ] || cargo install ripsecrets
python3 bench/dlp/make_corpus.py "$out" "$size" 4 "$compare"

# time_best N CMD...: of N runs, the best wall seconds, the best CPU
# seconds (user + system) and the peak RSS (KiB). On a shared machine the CPU
# time is the steadier measure: wall time also counts waiting for the core.
time_best() {
  local n=$1 best="" cpu="" rss=0; shift
  for _ in $(seq "$n"); do
    /usr/bin/time -f "%e %U %S %M" -o "$out/time.txt" taskset -c "$core" "$@" >"$out/last.out" 2>/dev/null || true
    read -r t u s m < <(tail -n 1 "$out/time.txt")
    c=$(awk "BEGIN{print $u + $s}")
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    if [ -z "$cpu" ] || awk "BEGIN{exit !($c < $cpu)}"; then cpu=$c; fi
    [ "$m" -gt "$rss" ] && rss=$m
  done
  echo "$best $cpu $rss"
}
mib() { du -sm --apparent-size "$1" | cut -f1; }
rate() { awk "BEGIN{printf \"%.1f\", $1 * 1.048576 / ($2 > 0.001 ? $2 : 0.001)}"; }
line() { # NAME MIB WALL CPU RSS
  printf "%-19s wall %7.2fs %8s MB/s | cpu %7.2fs %8s MB/s | peak RSS %7d KiB\n" \
    "$1" "$3" "$(rate "$2" "$3")" "$4" "$(rate "$2" "$4")" "$5"
}

echo "== machine"; nproc; uptime
m_clean=$(mib "$out/clean")
echo "== throughput, clean corpus (${m_clean} MiB), best of 3, one core"
read -r t c m < <(time_best 3 "$bin" scan "$out/clean"); line "claude-bottle scan" "$m_clean" "$t" "$c" "$m"
read -r t c m < <(time_best 3 "$rip" "$out/clean"); line "ripsecrets" "$m_clean" "$t" "$c" "$m"

m_cmp=$(mib "$out/compare")
echo "== all three on the compare corpus (${m_cmp} MiB), one core"
read -r t_cb c_cb m < <(time_best 3 "$bin" scan "$out/compare"); line "claude-bottle scan" "$m_cmp" "$t_cb" "$c_cb" "$m"
fp_cb=$(wc -l < "$out/last.out")
read -r t_rs c_rs m < <(time_best 3 "$rip" "$out/compare"); line "ripsecrets" "$m_cmp" "$t_rs" "$c_rs" "$m"
fp_rs=$(wc -l < "$out/last.out")
read -r t_ds c_ds m < <(cd "$out/compare" && time_best 1 detect-secrets scan --all-files .)
line "detect-secrets" "$m_cmp" "$t_ds" "$c_ds" "$m"
fp_ds=$(python3 -c 'import json,sys; print(sum(len(v) for v in json.load(open(sys.argv[1]))["results"].values()))' "$out/last.out")
echo "findings on this clean corpus (all false positives): claude-bottle $fp_cb, ripsecrets $fp_rs, detect-secrets $fp_ds"
awk "BEGIN{printf \"claude-bottle is %.0fx (wall) / %.0fx (cpu) faster than detect-secrets, %.1fx / %.1fx faster than ripsecrets\n\", \
  $t_ds / $t_cb, $c_ds / $c_cb, $t_rs / $t_cb, $c_rs / $c_cb}"

echo "== memory on one large file (the clean corpus 8 times, one file)"
big="$out/big.txt"
for _ in 1 2 3 4 5 6 7 8; do find "$out/clean" -type f -exec cat {} + ; done > "$big"
read -r t c m < <(time_best 1 "$bin" scan "$big"); line "claude-bottle scan" "$(mib "$big")" "$t" "$c" "$m"
rm -f "$big"

echo "== findings on the seeded corpus (200 planted secrets, $(mib "$out/seeded") MiB)"
"$bin" scan "$out/seeded" > "$out/cb.txt" || true
"$rip" "$out/seeded" > "$out/rs.txt" || true
(cd "$out/seeded" && detect-secrets scan --all-files . > "$out/ds.json")
python3 bench/dlp/compare_findings.py "$out"
