#!/usr/bin/env bash
# bench-placement.sh shows where unary c=64's run-to-run spread comes from:
# where the scheduler puts the load tool's threads and the server's. It
# starts one calcd and runs calc-bench against it, raw TCP then gRPC, 64
# callers on one connection, with the client and every calcd thread
#   same:  both on CPU 0 (taskset),
#   split: calcd on CPU 0, the client on CPU 1,
#   free:  both free to move, as scripts/bench.sh runs them,
# interleaved, RUNS times, and prints each run's calls/s, CPU use and
# tcp/grpc ratio. calcd keeps the GOMAXPROCS it started with (the machine's
# CPUs) throughout; only its threads' affinity changes (taskset -a -p).
#
# Environment: BENCH_DURATION=3 (seconds per run, after a 1 s warm-up),
# BENCH_RUNS=3. Linux with taskset and at least 2 CPUs. calcd is killed on
# exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib.sh
dur=${BENCH_DURATION:-3}
runs=${BENCH_RUNS:-3}
command -v taskset >/dev/null || { echo "bench-placement: taskset is required" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-placement: needs 2 CPUs" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$work/calcd" ./server/cmd/calcd
go build -o "$work/calc-bench" ./bench/cmd/calc-bench
"$work/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --log-level info 2>"$work/calcd.log" &
pid=$!
tcp=$(listen_addr "$work/calcd.log" tcp)
grpc=$(listen_addr "$work/calcd.log" grpc)
echo "bench-placement: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

# one PLACEMENT TRANSPORT prints "calls/s client% server%" of one run.
one() {
  local client=() addr=$tcp
  case $1 in
  same) taskset -a -pc 0 "$pid" >/dev/null && client=(taskset -c 0) ;;
  split) taskset -a -pc 0 "$pid" >/dev/null && client=(taskset -c 1) ;;
  free) taskset -a -pc "0-$(($(nproc) - 1))" "$pid" >/dev/null ;;
  esac
  [ "$2" = grpc ] && addr=$grpc
  "${client[@]}" "$work/calc-bench" --transport "$2" --addr "$addr" --conns 1 --concurrency 64 --duration "${dur}s" --warmup 1s \
    --server-pid "$pid" --json 2>"$work/err" |
    sed -n 's/.*"calls_per_sec":\([0-9.e+]*\).*"client_cpu_pct":\([0-9.e+]*\).*"server_cpu_pct":\([0-9.e+]*\).*/\1 \2 \3/p' | grep . ||
    { echo "bench-placement: $1 $2 failed:" >&2; cat "$work/err" >&2; exit 1; }
}

printf '%-6s %-3s %12s %6s %6s %12s %6s %6s %9s\n' placement run "tcp calls/s" "cli%" "srv%" "grpc calls/s" "cli%" "srv%" tcp/grpc
for ((r = 1; r <= runs; r++)); do
  for p in same split free; do
    read -r t tc ts < <(one "$p" tcp)
    read -r g gc gs < <(one "$p" grpc)
    printf '%-6s %-3s %12.0f %6.0f %6.0f %12.0f %6.0f %6.0f %8.2f×\n' "$p" "$r" "$t" "$tc" "$ts" "$g" "$gc" "$gs" "$(awk -v t="$t" -v g="$g" 'BEGIN {print t / g}')"
  done
done
