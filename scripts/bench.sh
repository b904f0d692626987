#!/usr/bin/env bash
# bench.sh runs calc's benchmark suite and writes bench/results: RESULTS.md
# (tables, targets, machine, commit, command, load average), charts/*.svg
# (latency percentiles per scenario), raw/SCENARIO/TRANSPORT-RUN.json
# (every run's --json report) and profiles/ (calcd CPU profiles). It also
# copies the summary tables into BENCHMARKS.md; benchreport regenerates
# both from raw/ alone.
#
# It builds calcd, calc-bench, calc-peer, the echo floor and the report
# tool, and starts on free loopback ports, all on this one machine:
#   - calcd (raw TCP "tcp" and gRPC "grpc", grpc-go), with the default
#     dispatch model (inline);
#   - two more calcds whose raw TCP ports run the other dispatch models,
#     --tcp-dispatch goroutine ("tcp_goroutine") and pool ("tcp_pool");
#   - calc-peer serve --peer drpc ("drpc": storj.io/drpc over TCP) and
#     --peer connect ("connect": connect-go over h2c), the same service;
#   - the echo floor ("floor").
# It measures idle-connection memory (10,000 connections, then 100,000 or
# as many as the hard open-file limit allows, each on a fresh calcd of its
# own, right after opening and settled 260 s later), runs every load scenario RUNS times, interleaving the transports
# (tcp, grpc, drpc, connect, floor, tcp_goroutine, tcp_pool, tcp, …) so
# that a noisy neighbour hits them alike, and reports medians with their
# spread. Streaming runs at three windows; each transport is reported at
# its best. Servers are killed on exit.
#
# Environment:
#   BENCH_DURATION=10   seconds per measured run (after a 1 s warm-up)
#   BENCH_RUNS=3        runs per scenario and transport
#   BENCH_QUICK=1       smoke test: 1 s runs, 1 run each, 1,000 idle connections
#                       settled for 5 s, results in /tmp/calc-bench-quick (not
#                       bench/results)
#   BENCH_IDLE_SETTLE=260s  how long the idle runs wait for the settled RSS
#   BENCH_OUT=DIR       where to write the results
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
  dur=${BENCH_DURATION:-1} runs=${BENCH_RUNS:-1} warm=0.5 idle_n=1000 idle_settle=${BENCH_IDLE_SETTLE:-5s}
  out=${BENCH_OUT:-/tmp/calc-bench-quick}
else
  dur=${BENCH_DURATION:-10} runs=${BENCH_RUNS:-3} warm=1 idle_n=10000 idle_settle=${BENCH_IDLE_SETTLE:-260s}
  out=${BENCH_OUT:-bench/results}
fi
command="BENCH_DURATION=$dur BENCH_RUNS=$runs BENCH_QUICK=$quick BENCH_IDLE_SETTLE=$idle_settle scripts/bench.sh"

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
go build -o "$bin/calc-peer" ./bench/cmd/calc-peer
go build -o "$bin/echofloor" ./scripts/echofloor
go build -o "$bin/benchreport" ./bench/cmd/benchreport

source scripts/lib.sh

# Servers (and clients) get the open-file limit raised to the hard limit,
# for the idle runs.
nofile=$(ulimit -Hn)
ulimit -n "$nofile"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit+dirty"
fi

# servers: name → pid, and the log its addresses are read from.
declare -A spid slog
# start_calcd NAME ARGS… starts a calcd with pprof on its admin port.
start_calcd() {
  local name=$1
  shift
  "$bin/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --admin-pprof --rpc-metrics=false \
    --log-level info "$@" 2>"$work/$name.log" &
  spid[$name]=$!
  slog[$name]=$work/$name.log
  pids+=("$!")
}
start_calcd calcd
start_calcd calcd_goroutine --tcp-dispatch goroutine
start_calcd calcd_pool --tcp-dispatch pool
"$bin/echofloor" serve --addr 127.0.0.1:0 2>"$work/floor.log" &
spid[floor]=$! slog[floor]=$work/floor.log
pids+=("$!")
for peer in drpc connect; do
  "$bin/calc-peer" serve --peer "$peer" --addr 127.0.0.1:0 2>"$work/$peer.log" &
  spid[$peer]=$! slog[$peer]=$work/$peer.log
  pids+=("$!")
done
# addr[TRANSPORT], pid[TRANSPORT], pprof[TRANSPORT]: what each transport's load runs against.
declare -A addr pid pprof
addr[tcp]=$(listen_addr "${slog[calcd]}" tcp)
addr[grpc]=$(listen_addr "${slog[calcd]}" grpc)
pprof[tcp]=$(listen_addr "${slog[calcd]}" admin) # pprof is served on the admin port
pprof[grpc]=${pprof[tcp]}
pid[tcp]=${spid[calcd]} pid[grpc]=${spid[calcd]}
for m in goroutine pool; do
  addr[tcp_$m]=$(listen_addr "${slog[calcd_$m]}" tcp)
  pprof[tcp_$m]=$(listen_addr "${slog[calcd_$m]}" admin)
  pid[tcp_$m]=${spid[calcd_$m]}
done
addr[floor]=$(listen_addr "${slog[floor]}" floor)
pid[floor]=${spid[floor]}
for peer in drpc connect; do
  addr[$peer]=$(listen_addr "${slog[$peer]}" "$peer")
  pid[$peer]=${spid[$peer]}
done
pprof_addr=${pprof[tcp]}
for tr in tcp grpc tcp_goroutine tcp_pool drpc connect floor; do
  echo "bench: $tr on ${addr[$tr]} (server pid ${pid[$tr]})" >&2
done

for d in raw charts profiles; do
  rm -rf "${out:?}/$d"
done
mkdir -p "$out/raw" "$out/profiles"

# check_servers ends the suite, showing the server's log, if a server has
# exited: every later figure would be meaningless.
check_servers() {
  local name
  for name in "${!spid[@]}"; do
    if ! ps -o stat= -p "${spid[$name]}" | grep -qv Z; then
      echo "bench: $name (pid ${spid[$name]}) has exited; the end of its log:" >&2
      tail -n 40 "${slog[$name]}" >&2
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
  local common=(--duration "${dur}s" --warmup "${warm}s" --json --server-pid "${pid[$tr]}")
  case $tr in
  tcp | grpc | tcp_goroutine | tcp_pool)
    "$bin/calc-bench" --transport "${tr%%_*}" --addr "${addr[$tr]}" --server-pprof "${pprof[$tr]}" "${common[@]}" "$@" \
      >"$file" 2>"$work/err" || rc=$?
    ;;
  drpc | connect)
    "$bin/calc-peer" bench --peer "$tr" --addr "${addr[$tr]}" "${common[@]}" "$@" >"$file" 2>"$work/err" || rc=$?
    ;;
  floor)
    local args=("$@")
    if [ "${args[0]:-}" = --rpc ]; then args=("${args[@]:2}"); fi # the floor pipelines frames, not a stream
    "$bin/echofloor" bench --addr "${addr[floor]}" "${common[@]}" "${args[@]}" >"$file" 2>"$work/err" || rc=$?
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
# Each run also waits idle_settle (BENCH_IDLE_SETTLE) for the settled
# figure: the runtime forces a collection 2 minutes after the last one in
# an idle server, so 260 s sees at least one and the scavenger's release
# after it. calc-bench reports conns_lost, and no settled figure, if any
# connection closed meanwhile (BENCHMARKS.md, "Idle connections: what one
# costs": with Go's default TCP keepalive they did). The sizes run side
# by side, each on its own calcd (memory, not CPU, is measured), so the
# wait is paid once.
idle_pids=()
for n in "${idle_sizes[@]}"; do
  mkdir -p "$out/raw/idle-$n"
  echo "bench: idle connections: $n (settled after $idle_settle)" >&2
  # A log of its own: listen_addr must not find the previous calcd's address
  # before this one's shell has truncated a shared log.
  "$bin/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --max-connections $((n + 100)) --max-connections-per-addr $((n + 100)) --log-level info \
    2>"$work/idle-calcd-$n.log" &
  idle_pid=$!
  pids+=("$idle_pid")
  idle_addr=$(listen_addr "$work/idle-calcd-$n.log" tcp)
  "$bin/calc-bench" --transport tcp --addr "$idle_addr" --idle "$n" --server-pid "$idle_pid" --idle-settle "$idle_settle" --json \
    >"$out/raw/idle-$n/tcp-1.json" 2>"$work/idle-err-$n" &
  idle_pids+=("$!:$idle_pid:$n")
done
for entry in "${idle_pids[@]}"; do
  IFS=: read -r bench_pid idle_pid n <<<"$entry"
  wait "$bench_pid" || { echo "bench: idle $n failed:" >&2; cat "$work/idle-err-$n" >&2; }
  kill "$idle_pid"
  wait "$idle_pid" 2>/dev/null || true
  [ -s "$out/raw/idle-$n/tcp-1.json" ] || rm -rf "$out/raw/idle-$n"
done

# 2. Load scenarios: slug, the load's flags, and the transports that run
# it. The dispatch models run the scenarios the engine comparison needs.
all="tcp grpc drpc connect floor tcp_goroutine tcp_pool"
scenarios=(
  "unary-c1|--conns 1 --concurrency 1|$all"
  "unary-c64|--conns 1 --concurrency 64|$all"
  "unary-c64x8|--conns 8 --concurrency 64|tcp grpc drpc connect floor"
  "stream-w16x4|--rpc stream --conns 4 --pipeline 16|$all"
  "stream-w128x4|--rpc stream --conns 4 --pipeline 128|$all"
  "stream-w1024x4|--rpc stream --conns 4 --pipeline 1024|$all"
)
total=0
for s in "${scenarios[@]}"; do
  IFS='|' read -r _ _ trs <<<"$s"
  read -r -a trs <<<"$trs"
  total=$((total + ${#trs[@]} * runs))
done
i=0
for s in "${scenarios[@]}"; do
  IFS='|' read -r slug flags trs <<<"$s"
  mkdir -p "$out/raw/$slug"
  for ((r = 1; r <= runs; r++)); do
    for tr in $trs; do
      i=$((i + 1))
      printf 'bench: [%3d/%d] %-14s %-13s run %d ' "$i" "$total" "$slug" "$tr" "$r" >&2
      # shellcheck disable=SC2086 # the flags are meant to split
      load "$tr" "$out/raw/$slug/$tr-$r.json" $flags
    done
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

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
report_args=(--dir "$out" --command "$command" --commit "$commit" --load "$load_start at the start, $load_end at the end")
if [ "$out" = bench/results ]; then
  report_args+=(--benchmarks BENCHMARKS.md)
fi
"$bin/benchreport" "${report_args[@]}"
echo "bench: wrote $out/RESULTS.md" >&2
sed -n '/^## Summary/,/^## Charts/p' "$out/RESULTS.md" | sed '$d'
