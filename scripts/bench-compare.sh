#!/usr/bin/env bash
# bench-compare.sh measures whether a change made calc slower against its
# peer: it builds calcd and the load tool at two git revisions (default:
# BASE=HEAD~1 and the work tree), and for each one measures raw TCP and
# gRPC calls/s, unary, one connection, at 1 and at 64 callers, RUNS times,
# interleaved (base tcp, base grpc, new tcp, new grpc, base tcp, …) so that
# both revisions share whatever else the machine is doing. It prints every
# run's tcp/grpc ratio and the medians per revision.
#
#   scripts/bench-compare.sh [BASE [NEW]]     NEW may be "." (the work tree)
#
# Environment: BENCH_DURATION=5 (seconds per run, after a 1 s warm-up),
# BENCH_RUNS=3. Servers are killed on exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib.sh
base=${1:-HEAD~1}
new=${2:-.}
dur=${BENCH_DURATION:-5}
runs=${BENCH_RUNS:-3}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "$work"/src-*; do [ -d "$d" ] && git worktree remove --force "$d" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build NAME REV builds calcd and the load tool of REV into $work/NAME. The
# load tool is calc-bench where the revision has one, else calc (calc bench).
build() {
  local name=$1 rev=$2 src
  if [ "$rev" = . ]; then
    src=$root
  else
    src=$work/src-$name
    git worktree add --detach --quiet "$src" "$rev"
  fi
  mkdir -p "$work/$name"
  echo "bench-compare: building $name ($rev: $(git -C "$src" log -1 --format='%h %s' | cut -c1-70))" >&2
  (cd "$src" && go build -o "$work/$name/calcd" ./server/cmd/calcd)
  if [ -d "$src/bench/cmd/calc-bench" ]; then
    (cd "$src" && go build -o "$work/$name/calc-bench" ./bench/cmd/calc-bench)
    echo "$work/$name/calc-bench" >"$work/$name/tool"
  else
    (cd "$src" && go build -o "$work/$name/calc" ./client/cmd/calc)
    echo "$work/$name/calc bench" >"$work/$name/tool"
  fi
}
build base "$base"
build new "$new"

# start NAME starts NAME's calcd on free loopback ports and records its
# addresses.
start() {
  local name=$1 log=$work/$1/calcd.log
  "$work/$name/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --log-level info 2>"$log" &
  pids+=($!)
  echo $! >"$work/$name/pid"
  for tr in tcp grpc; do
    listen_addr "$log" "$tr" >"$work/$name/$tr"
  done
}
start base
start new

# rate NAME TRANSPORT CONCURRENCY prints the calls/s of one run.
rate() {
  local name=$1 tr=$2 c=$3 tool
  read -r -a tool <"$work/$name/tool"
  "${tool[@]}" --transport "$tr" --addr "$(cat "$work/$name/$tr")" --conns 1 --concurrency "$c" \
    --duration "${dur}s" --warmup 1s --json 2>"$work/err" |
    sed -n 's/.*"calls_per_sec":\([0-9.e+]*\).*/\1/p' | head -n 1 | grep . ||
    { echo "bench-compare: $name $tr c=$c failed:" >&2; cat "$work/err" >&2; exit 1; }
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

printf '%-5s %-4s %-3s %12s %12s %8s\n' rev c run "tcp calls/s" "grpc calls/s" tcp/grpc
for c in 1 64; do
  for ((r = 1; r <= runs; r++)); do
    for name in base new; do
      t=$(rate "$name" tcp "$c")
      g=$(rate "$name" grpc "$c")
      ratio=$(awk -v t="$t" -v g="$g" 'BEGIN {printf "%.2f", t / g}')
      echo "$ratio" >>"$work/$name-c$c.ratios"
      printf '%-5s %-4s %-3s %12.0f %12.0f %7s×\n' "$name" "$c" "$r" "$t" "$g" "$ratio"
    done
  done
done
echo
for c in 1 64; do
  for name in base new; do
    printf 'median tcp/grpc, unary c=%-2s 1 conn, %-4s: %s× (runs: %s)\n' "$c" "$name" \
      "$(median <"$work/$name-c$c.ratios")" "$(paste -sd' ' "$work/$name-c$c.ratios")"
  done
done
