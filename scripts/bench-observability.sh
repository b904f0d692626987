#!/usr/bin/env bash
# bench-observability.sh measures what calcd's observability costs raw TCP
# calls: three calcd on free loopback ports, one plain, one with tracing
# configured but sampling nothing (OTEL_EXPORTER_OTLP_ENDPOINT set, so the
# SDK, the exporter and the tracing interceptor are all installed, and
# OTEL_TRACES_SAMPLER=parentbased_always_off), one with per-RPC metrics
# (--admin-addr), and calc-bench over raw TCP, unary on one connection at
# CONCURRENCY callers, RUNS times, interleaved: plain, traced, traced with
# a traced client (calc-bench with the same variables: a traceparent,
# not sampled, on every call, extracted by the server), metrics, plain, ...
# It prints each run's calls/s and the server's CPU per call, and each
# variant's ratio against plain in the same run.
#
# It ends with the table benchreport makes of the run (--cost), with each
# variant's medians: of the calls/s ratio and of the server CPU per call
# ratio.
#
# Placement: calls/s at c=64 swings by ±20% with where the scheduler puts
# client and server threads on a 2-core machine (scripts/bench-placement.sh),
# far more than the 2% and 5% this measures. So by default every calcd runs
# on CPU 0 and calc-bench on CPU 1 (taskset), the same for every variant;
# BENCH_PIN=free leaves placement to the scheduler.
#
# Even pinned, a closed loop's calls/s moves by ±20% from run to run here,
# and the CPU per call with it (a faster run batches more calls per system
# call). BENCH_RATE=N (calls/s) makes the load open-loop at that fixed rate,
# below what the server can do: every variant then serves the same calls
# at the same pace, so its server CPU per call differs by what the variant
# itself costs, which is what resolves a few percent.
#
# The figures also go, as JSON lines, to
# bench/results/observability-DATE.jsonl (or BENCH_OBS_OUT), with the
# machine, the commit and the command; `go run ./bench/cmd/benchreport
# --cost FILE --benchmarks BENCHMARKS.md` writes their table into
# BENCHMARKS.md's "Observability cost" section (closed loop and fixed rate
# each have their place).
#
# Environment: BENCH_DURATION=5 (seconds per run, after a 1 s warm-up),
# BENCH_RUNS=3, BENCH_CONCURRENCY=64, BENCH_PIN=split, BENCH_RATE (unset:
# closed loop), BENCH_OBS_OUT. Servers are killed on exit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib.sh
dur=${BENCH_DURATION:-5}
runs=${BENCH_RUNS:-3}
c=${BENCH_CONCURRENCY:-64}
pin=${BENCH_PIN:-split}
rate_args=()
[ -z "${BENCH_RATE:-}" ] || rate_args=(--rate "$BENCH_RATE")
client=()
case $pin in
  split)
    command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ] ||
      { echo "bench-observability: BENCH_PIN=split needs taskset and 2 CPUs; set BENCH_PIN=free" >&2; exit 1; }
    client=(taskset -c 1) ;;
  free) ;;
  *) echo "bench-observability: BENCH_PIN is split or free" >&2; exit 1 ;;
esac
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-observability: building calcd and calc-bench" >&2
go build -o "$work/calcd" ./server/cmd/calcd
go build -o "$work/calc-bench" ./bench/cmd/calc-bench

# Tracing configured, sampling nothing. The endpoint is a closed loopback
# port: with nothing sampled, nothing is ever sent to it.
otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 OTEL_TRACES_SAMPLER=parentbased_always_off)

# start NAME [ENV...] -- [ARGS...] starts a calcd and records its raw TCP
# address in $work/NAME.tcp and its pid in $work/NAME.pid.
start() {
  local name=$1 envs=()
  shift
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env ${envs[@]+"${envs[@]}"} "$work/calcd" --tcp-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --log-level info "$@" 2>"$work/$name.log" &
  pids+=($!)
  echo $! >"$work/$name.pid"
  listen_addr "$work/$name.log" tcp >"$work/$name.tcp"
  if [ "$pin" = split ]; then taskset -a -pc 0 "$!" >/dev/null; fi
}
start plain --
start traced "${otel[@]}" --
start metrics -- --admin-addr 127.0.0.1:0
grep -q '"msg":"tracing"' "$work/traced.log" || { echo "bench-observability: the traced calcd is not tracing:" >&2; cat "$work/traced.log" >&2; exit 1; }

# rate NAME [ENV...] prints one run's calls/s and server CPU µs per call.
rate() {
  local name=$1
  shift
  env "$@" ${client[@]+"${client[@]}"} "$work/calc-bench" --transport tcp --addr "$(cat "$work/$name.tcp")" --conns 1 --concurrency "$c" \
    --duration "${dur}s" --warmup 1s ${rate_args[@]+"${rate_args[@]}"} --server-pid "$(cat "$work/$name.pid")" --json 2>"$work/err" >"$work/out" ||
    { echo "bench-observability: $name failed:" >&2; cat "$work/err" >&2; exit 1; }
  sed -n 's/.*"calls_per_sec":\([0-9.e+]*\).*"server_cpu_us_per_call":\([0-9.e+]*\).*/\1 \2/p' "$work/out" | grep . ||
    { echo "bench-observability: no figures from $name:" >&2; cat "$work/out" "$work/err" >&2; exit 1; }
}

out=${BENCH_OBS_OUT:-bench/results/observability-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$out")"
command="BENCH_DURATION=$dur BENCH_RUNS=$runs BENCH_CONCURRENCY=$c BENCH_PIN=$pin${BENCH_RATE:+ BENCH_RATE=$BENCH_RATE} scripts/bench-observability.sh"
results_meta observability "$command" ",\"duration_s\":$dur,\"runs\":$runs,\"concurrency\":$c,\"rate\":${BENCH_RATE:-0},\"pin\":\"$pin\"" >"$out"
# record RUN VARIANT CALLS_PER_SEC SERVER_CPU_US appends one load's record to $out.
record() { printf '{"kind":"run","run":%s,"variant":"%s","calls_per_sec":%s,"server_cpu_us":%s}\n' "$@" >>"$out"; }

echo "raw TCP, unary, 1 connection, c=$c, ${dur}s runs, placement $pin, ${BENCH_RATE:-closed-loop}${BENCH_RATE:+ calls/s}; calls/s (server CPU µs/call); ratio: calls/s against plain in the same run"
for ((r = 1; r <= runs; r++)); do
  read -r p pc < <(rate plain)
  read -r t tc < <(rate traced)
  read -r b bc < <(rate traced "${otel[@]}")
  read -r m mc < <(rate metrics)
  awk -v r="$r" -v p="$p" -v pc="$pc" -v t="$t" -v tc="$tc" -v b="$b" -v bc="$bc" -v m="$m" -v mc="$mc" 'BEGIN {
    printf "run %d  plain %7.0f (%.2f)  traced-unsampled %7.0f (%.2f) %.3f  +client %7.0f (%.2f) %.3f  metrics %7.0f (%.2f) %.3f\n",
      r, p, pc, t, tc, t / p, b, bc, b / p, m, mc, m / p }'
  record "$r" plain "$p" "$pc"
  record "$r" traced-unsampled "$t" "$tc"
  record "$r" +client "$b" "$bc"
  record "$r" metrics "$m" "$mc"
done
results_end >>"$out"
# The table, with each variant's medians, as BENCHMARKS.md shows it.
echo
go run ./bench/cmd/benchreport --cost "$out"
echo "bench-observability: results in $out; the table: go run ./bench/cmd/benchreport --cost $out [--benchmarks BENCHMARKS.md]" >&2
