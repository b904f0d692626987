#!/usr/bin/env bash
# bench-tls.sh measures what TLS costs each transport: two calcd on free
# loopback ports, one plaintext and one with development certificates
# (tools/devcerts), and calc-bench, unary on one connection at 1 and 64
# callers, RUNS times, interleaved (tcp, grpc, tcp+TLS, grpc+TLS, ...). It
# prints calls/s and the ratios: TLS against plaintext per transport, and
# raw TCP + TLS against gRPC + TLS.
#
# The figures also go, as JSON lines, to bench/results/tls-DATE.jsonl (or
# BENCH_TLS_OUT), with the machine, the commit and the command;
# `go run ./bench/cmd/benchreport --cost FILE --benchmarks BENCHMARKS.md`
# writes their table into BENCHMARKS.md's "TLS" section.
#
# Environment: BENCH_DURATION=3 (seconds per run, after a 1 s warm-up),
# BENCH_RUNS=3, BENCH_TLS_OUT. Servers are killed on exit.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib.sh
dur=${BENCH_DURATION:-3}
runs=${BENCH_RUNS:-3}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-tls: building calcd and calc-bench, making development certificates" >&2
go build -o "$work/calcd" ./server/cmd/calcd
go build -o "$work/calc-bench" ./bench/cmd/calc-bench
go run ./tools/devcerts -out "$work/certs" >/dev/null

# start NAME ARGS... starts a calcd and records its addresses in $work/NAME.{tcp,grpc}.
start() {
  local name=$1
  shift
  "$work/calcd" --tcp-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --log-level info "$@" 2>"$work/$name.log" &
  pids+=($!)
  for tr in tcp grpc; do
    listen_addr "$work/$name.log" "$tr" >"$work/$name.$tr"
  done
}
start plain
start tls --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server-key.pem"

# rate NAME TRANSPORT CONCURRENCY [FLAGS...] prints one run's calls/s.
rate() {
  local name=$1 tr=$2 c=$3
  shift 3
  "$work/calc-bench" --transport "$tr" --addr "$(cat "$work/$name.$tr")" --conns 1 --concurrency "$c" \
    --duration "${dur}s" --warmup 1s --json "$@" 2>"$work/err" |
    sed -n 's/.*"calls_per_sec":\([0-9.e+]*\).*/\1/p' | head -n 1 | grep . ||
    { echo "bench-tls: $name $tr c=$c failed:" >&2; cat "$work/err" >&2; exit 1; }
}

out=${BENCH_TLS_OUT:-bench/results/tls-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$out")"
results_meta tls "BENCH_DURATION=$dur BENCH_RUNS=$runs scripts/bench-tls.sh" ",\"duration_s\":$dur,\"runs\":$runs" >"$out"
# record C RUN VARIANT CALLS_PER_SEC appends one load's record to $out.
record() { printf '{"kind":"run","callers":%s,"run":%s,"variant":"%s","calls_per_sec":%s}\n' "$@" >>"$out"; }

for c in 1 64; do
  for ((r = 1; r <= runs; r++)); do
    tp=$(rate plain tcp "$c")
    gp=$(rate plain grpc "$c")
    tt=$(rate tls tcp "$c" --tls-ca "$work/certs/ca.pem")
    gt=$(rate tls grpc "$c" --tls-ca "$work/certs/ca.pem")
    awk -v c="$c" -v r="$r" -v tp="$tp" -v gp="$gp" -v tt="$tt" -v gt="$gt" 'BEGIN {
      printf "c=%-3s run %d  tcp %8.0f  grpc %7.0f  tcp+tls %8.0f  grpc+tls %7.0f  TLS/plain: tcp %.2f grpc %.2f  tcp+tls/grpc+tls %.2f\n",
        c, r, tp, gp, tt, gt, tt / tp, gt / gp, tt / gt }'
    record "$c" "$r" tcp "$tp"
    record "$c" "$r" grpc "$gp"
    record "$c" "$r" tcp+tls "$tt"
    record "$c" "$r" grpc+tls "$gt"
  done
done
results_end >>"$out"
echo "bench-tls: results in $out; the table: go run ./bench/cmd/benchreport --cost $out [--benchmarks BENCHMARKS.md]" >&2
