#!/usr/bin/env bash
# bench.sh runs calc's benchmark suite and writes bench/results: RESULTS.md
# (tables, targets, machine, command), charts/*.svg (latency percentiles per
# scenario), raw/SCENARIO/TRANSPORT-RUN.json (every run's calc bench or
# echofloor bench --json output) and profiles/ (calcd CPU profiles). It also
# copies the summary tables into BENCHMARKS.md.
#
# It builds calcd, calc-bench, the echo floor and the report tool, starts one
# calcd and one floor on free loopback ports, measures idle-connection
# memory (10,000 connections, then 100,000 or as many as the hard open-file
# limit allows, each on a fresh calcd of its own), runs every load scenario RUNS times,
# interleaving the transports (tcp, grpc, floor, tcp, grpc, floor, …), and
# reports medians. Servers are killed on exit.
#
# Environment:
#   BENCH_DURATION=10   seconds per measured run (after a 1 s warm-up)
#   BENCH_RUNS=3        runs per scenario and transport
#   BENCH_QUICK=1       smoke test: 1 s runs, 1 run each, 1,000 idle connections,
#                       results in /tmp/calc-bench-quick (not bench/results)
#   BENCH_OUT=DIR       where to write the results
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
  dur=${BENCH_DURATION:-1} runs=${BENCH_RUNS:-1} warm=0.5 idle_n=1000
  out=${BENCH_OUT:-/tmp/calc-bench-quick}
else
  dur=${BENCH_DURATION:-10} runs=${BENCH_RUNS:-3} warm=1 idle_n=10000
  out=${BENCH_OUT:-bench/results}
fi
command="BENCH_DURATION=$dur BENCH_RUNS=$runs BENCH_QUICK=$quick scripts/bench.sh"

for tool in go curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done

bin=$root/bin
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building" >&2
go build -o "$bin/calcd" ./server/cmd/calcd
go build -o "$bin/calc-bench" ./bench/cmd/calc-bench
go build -o "$bin/echofloor" ./scripts/echofloor
go build -o "$bin/benchreport" ./bench/cmd/benchreport

source scripts/lib.sh

# Servers (and clients) get the open-file limit raised to the hard limit,
# for the idle runs.
nofile=$(ulimit -Hn)
ulimit -n "$nofile"
"$bin/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --admin-pprof --rpc-metrics=false \
  --log-level info 2>"$work/calcd.log" &
calcd_pid=$!
pids+=("$calcd_pid")
"$bin/echofloor" serve --addr 127.0.0.1:0 2>"$work/floor.log" &
floor_pid=$!
pids+=("$floor_pid")
tcp_addr=$(listen_addr "$work/calcd.log" tcp)
grpc_addr=$(listen_addr "$work/calcd.log" grpc)
pprof_addr=$(listen_addr "$work/calcd.log" admin) # pprof is served on the admin port
floor_addr=$(listen_addr "$work/floor.log" floor)
echo "bench: calcd pid $calcd_pid (tcp $tcp_addr, grpc $grpc_addr, pprof $pprof_addr), floor pid $floor_pid ($floor_addr)" >&2

for d in raw charts profiles; do
  rm -rf "${out:?}/$d"
done
mkdir -p "$out/raw" "$out/profiles"

# check_servers ends the suite, showing the server's log, if a server has
# exited: every later figure would be meaningless.
check_servers() {
  local name pid
  for name in calcd floor; do
    pid=$calcd_pid
    [ "$name" = floor ] && pid=$floor_pid
    if ! ps -o stat= -p "$pid" | grep -qv Z; then
      echo "bench: $name (pid $pid) has exited; the end of its log:" >&2
      tail -n 40 "$work/$name.log" >&2
      exit 1
    fi
  done
}

# field FILE NAME prints a number field of a JSON report.
field() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" "$1"; }

# load TRANSPORT OUTFILE ARGS… runs one load against TRANSPORT, writing its
# JSON report to OUTFILE. A run that fails is reported and the suite goes on.
load() {
  local tr=$1 file=$2 rc=0
  shift 2
  local common=(--duration "${dur}s" --warmup "${warm}s" --json)
  case $tr in
  tcp | grpc)
    local addr=$tcp_addr
    [ "$tr" = grpc ] && addr=$grpc_addr
    "$bin/calc-bench" --transport "$tr" --addr "$addr" --server-pid "$calcd_pid" --server-pprof "$pprof_addr" "${common[@]}" "$@" \
      >"$file" 2>"$work/err" || rc=$?
    ;;
  floor)
    "$bin/echofloor" bench --addr "$floor_addr" --server-pid "$floor_pid" "${common[@]}" "$@" >"$file" 2>"$work/err" || rc=$?
    ;;
  esac
  if [ "$rc" != 0 ]; then
    echo "bench: $file: exit $rc" >&2
    cat "$work/err" >&2
  fi
  check_servers
  if [ ! -s "$file" ]; then
    rm -f "$file"
    return 0
  fi
  printf '%14.0f calls/s  p50 %9.1fµs  p99 %9.1fµs\n' "$(field "$file" calls_per_sec)" "$(field "$file" p50_us)" "$(field "$file" p99_us)" >&2 || true
}

# 1. Idle memory: 10,000 connections, then 100,000 or as many as the hard
# open-file limit lets one process hold. Each size gets a calcd of its own,
# fresh, so that no run reuses memory an earlier one freed.
idle_sizes=("$idle_n")
if [ "$quick" != 1 ]; then
  big=100000
  if [ "$nofile" != unlimited ] && [ "$nofile" -lt $((big + 1024)) ]; then
    big=$((nofile - 1024))
    echo "bench: the hard open-file limit is $nofile: the largest idle run is $big connections, not 100,000" >&2
  fi
  if [ "$big" -gt "$idle_n" ]; then
    idle_sizes+=("$big")
  fi
fi
for n in "${idle_sizes[@]}"; do
  mkdir -p "$out/raw/idle-$n"
  echo "bench: idle connections: $n" >&2
  "$bin/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --max-connections $((n + 100)) --max-connections-per-addr $((n + 100)) --log-level info \
    2>"$work/idle-calcd.log" &
  idle_pid=$!
  pids+=("$idle_pid")
  idle_addr=$(listen_addr "$work/idle-calcd.log" tcp)
  "$bin/calc-bench" --transport tcp --addr "$idle_addr" --idle "$n" --server-pid "$idle_pid" --json \
    >"$out/raw/idle-$n/tcp-1.json" 2>"$work/err" || { echo "bench: idle $n failed:" >&2; cat "$work/err" >&2; }
  kill "$idle_pid"
  wait "$idle_pid" 2>/dev/null || true
  [ -s "$out/raw/idle-$n/tcp-1.json" ] || rm -rf "$out/raw/idle-$n"
done

# 2. Load scenarios: slug, then the flags for calc (tcp and grpc) and for the floor.
scenarios=(
  "unary-c1|--conns 1 --concurrency 1|--conns 1 --concurrency 1"
  "unary-c16|--conns 1 --concurrency 16|--conns 1 --concurrency 16"
  "unary-c64|--conns 1 --concurrency 64|--conns 1 --concurrency 64"
  "unary-c64x8|--conns 8 --concurrency 64|--conns 8 --concurrency 64"
  "stream-w128x4|--rpc stream --conns 4 --pipeline 128|--conns 4 --pipeline 128"
)
total=$((${#scenarios[@]} * runs * 3))
i=0
for s in "${scenarios[@]}"; do
  IFS='|' read -r slug calc_flags floor_flags <<<"$s"
  mkdir -p "$out/raw/$slug"
  for ((r = 1; r <= runs; r++)); do
    for tr in tcp grpc floor; do
      i=$((i + 1))
      flags=$calc_flags
      [ "$tr" = floor ] && flags=$floor_flags
      printf 'bench: [%2d/%d] %-14s %-5s run %d ' "$i" "$total" "$slug" "$tr" "$r" >&2
      # shellcheck disable=SC2086 # the flags are meant to split
      load "$tr" "$out/raw/$slug/$tr-$r.json" $flags
    done
  done
done

# 3. calcd CPU profiles during a tcp load: an extra run each, not in the medians.
profile() {
  local name=$1 secs=$((dur > 2 ? dur - 1 : 1))
  shift
  echo "bench: profiling calcd during $name (${secs}s)" >&2
  load tcp "$work/$name.json" "$@" &
  local load_pid=$!
  pids+=("$load_pid")
  sleep "$warm"
  curl -sf -o "$out/profiles/$name.pb.gz" "http://$pprof_addr/debug/pprof/profile?seconds=$secs" ||
    echo "bench: profile $name failed" >&2
  wait "$load_pid" || true
  check_servers
  if [ -s "$out/profiles/$name.pb.gz" ]; then
    go tool pprof -top -nodecount=15 "$bin/calcd" "$out/profiles/$name.pb.gz" >"$out/profiles/$name.txt" 2>/dev/null ||
      echo "bench: pprof $name failed" >&2
  fi
}
profile tcp-unary-c64 --conns 1 --concurrency 64
profile tcp-stream-w128x4 --rpc stream --conns 4 --pipeline 128

# 4. Report.
report_args=(--dir "$out" --command "$command")
if [ "$out" = bench/results ]; then
  report_args+=(--benchmarks BENCHMARKS.md)
fi
"$bin/benchreport" "${report_args[@]}"
echo "bench: wrote $out/RESULTS.md" >&2
sed -n '/^| scenario/,/^## Charts/p' "$out/RESULTS.md" | sed '$d'
