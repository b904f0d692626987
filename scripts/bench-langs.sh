#!/usr/bin/env bash
# bench-langs.sh measures what a user of each language's calc client gets: unary
# Calculate calls/s and latency over raw TCP and over gRPC, one connection, at
# a sweep of concurrencies, every language's client against the same calcd.
#
#   scripts/bench-langs.sh [--smoke] [LANG...]     LANG: go java python node cpp (default: all)
#
# It builds calcd, calc-bench and benchreport, starts ONE calcd on free
# loopback ports (its defaults otherwise), and for each concurrency, each
# language and each transport (tcp, grpc), interleaved in that order so that
# every language sees the same machine state, runs one load client: Go's is
# calc-bench (--conns 1), whose report is converted to the others' form; the
# others' are client/LANG/run-bench.sh (the contract:
# /work/briefs/langbench-contract.md, restated in BENCHMARKS.md#every-language):
# one connection, N calls outstanding, every answer checked, one JSON line.
# Each run's JSON line, with calcd's CPU seconds over the run (warm-up
# included, from /proc/PID/stat) and the client's exit status, goes to
# bench/results/langs-DATE.jsonl after a first line with the machine (nproc,
# CPU model, load average), the commit and the command; benchreport --langs
# then writes the table into BENCHMARKS.md between <!-- langs:begin --> and
# <!-- langs:end -->. Before the sweep each language runs once briefly (its
# build, if any, happens there, outside the figures).
#
# --smoke (what scripts/test.sh runs, after interop has built every client):
# 1 s per point after 0.5 s of warm-up, c=1 and c=8 only, results in a
# temporary file, the table printed on stdout. It fails if any client exits
# non-zero, reports errors or makes no call; it asserts nothing about timing.
# Either mode exits non-zero if any run failed, and at once if a language's
# run-bench.sh is missing.
#
# Environment (full mode): BENCH_LANGS_CONC="1 8 64 256" (concurrencies),
# BENCH_LANGS_DURATION=5 (measured seconds per run), BENCH_LANGS_WARMUP=2
# (seconds of warm-up per run: the JIT needs it), BENCH_LANGS_OUT=FILE.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/lib.sh

all_langs=(go java python node cpp)
smoke=0
langs=()
for a in "$@"; do
  case $a in
  --smoke) smoke=1 ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  -*)
    echo "bench-langs: unknown flag $a (usage: scripts/bench-langs.sh [--smoke] [LANG...])" >&2
    exit 2
    ;;
  *)
    case " ${all_langs[*]} " in
    *" $a "*) langs+=("$a") ;;
    *)
      echo "bench-langs: unknown language $a (known: ${all_langs[*]})" >&2
      exit 2
      ;;
    esac
    ;;
  esac
done
[ ${#langs[@]} -gt 0 ] || langs=("${all_langs[@]}")

missing=() present=()
for l in "${langs[@]}"; do
  if [ "$l" != go ] && [ ! -f "client/$l/run-bench.sh" ]; then missing+=("$l"); else present+=("$l"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  for l in "${missing[@]}"; do
    echo "bench-langs: client/$l/run-bench.sh is missing: $l has no load client (BENCHMARKS.md#every-language says what it must do)" >&2
  done
  flags=""
  [ "$smoke" = 0 ] || flags="--smoke "
  echo "bench-langs: to measure only the others: scripts/bench-langs.sh $flags${present[*]}" >&2
  exit 1
fi

if [ "$smoke" = 1 ]; then
  conc=(1 8) dur=1 warm=0.5
else
  read -r -a conc <<<"${BENCH_LANGS_CONC:-1 8 64 256}"
  dur=${BENCH_LANGS_DURATION:-5} warm=${BENCH_LANGS_WARMUP:-2}
fi
if [ "$smoke" = 1 ]; then
  command="scripts/bench-langs.sh --smoke ${langs[*]}"
else
  command="BENCH_LANGS_CONC='${conc[*]}' BENCH_LANGS_DURATION=$dur BENCH_LANGS_WARMUP=$warm scripts/bench-langs.sh ${langs[*]}"
fi

work=$(mktemp -d)
calcd_pid=""
client_pid=""
cleanup() {
  [ -z "$client_pid" ] || kill "$client_pid" 2>/dev/null || true
  [ -z "$calcd_pid" ] || kill "$calcd_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench-langs: building calcd, calc-bench and benchreport" >&2
go build -o "$work/calcd" ./server/cmd/calcd
go build -o "$work/calc-bench" ./bench/cmd/calc-bench
go build -o "$work/benchreport" ./bench/cmd/benchreport

if [ "$smoke" = 1 ]; then
  out=${BENCH_LANGS_OUT:-$work/langs.jsonl}
else
  out=${BENCH_LANGS_OUT:-bench/results/langs-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
fi
mkdir -p "$(dirname "$out")"

"$work/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --log-level info 2>"$work/calcd.log" &
calcd_pid=$!
declare -A addr
addr[tcp]=$(listen_addr "$work/calcd.log" tcp)
addr[grpc]=$(listen_addr "$work/calcd.log" grpc)
echo "bench-langs: calcd (pid $calcd_pid) on raw TCP ${addr[tcp]}, gRPC ${addr[grpc]}; ${langs[*]} at c=${conc[*]}, ${dur}s each after ${warm}s of warm-up" >&2

# cpu_ticks PID prints the process's user+system CPU time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=false
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || dirty=true
model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
{
  printf '{"kind":"meta","date":"%s","commit":"%s","dirty":%s,"nproc":%s,"cpu_model":%s,"load_start":"%s","command":%s,' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$dirty" "$(nproc)" "$(json_str "$model")" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(json_str "$command")"
  printf '"duration_s":%s,"warmup_s":%s,"concurrency":[%s],"langs":[%s],"calcd":%s}\n' "$dur" "$warm" \
    "$(IFS=,; echo "${conc[*]}")" "$(printf '"%s",' "${langs[@]}" | sed 's/,$//')" "$(json_str "$("$work/calcd" --version 2>&1 | head -n 1)")"
} >"$out"

# num_field NAME prints the number field NAME of the JSON line on stdin (0 if absent).
num_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" | grep . || echo 0; }
# go_line FILE converts calc-bench's --json report into the contract's line.
go_line() {
  local f=$1 errs
  errs=$(sed -n 's/.*"errors":{\([^}]*\)}.*/\1/p' "$f" | tr ',' '\n' | sed -n 's/.*:\([0-9]*\)$/\1/p' | awk '{s += $1} END {print s + 0}')
  num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$f" | head -n 1; }
  printf '{"lang":"go","transport":"%s","concurrency":%s,"calls":%s,"errors":%s,"seconds":%s,"calls_per_sec":%s,"p50_us":%s,"p99_us":%s}\n' \
    "$(sed -n 's/.*"transport":"\([a-z]*\)".*/\1/p' "$f" | head -n 1)" "$(num concurrency)" "$(num calls)" "$errs" \
    "$(num duration_s)" "$(num calls_per_sec)" "$(num p50_us)" "$(num p99_us)"
}

declare -A ran # languages that have run once: later runs get a tighter time bound
failures=()
# point LANG TRANSPORT C DURATION WARMUP [record] runs one load client; with
# "record", appends its line to $out and counts a failure.
point() {
  local lang=$1 tr=$2 c=$3 d=$4 w=$5 rec=${6:-} rc=0 limit line t0 t1 c0 c1
  # A bound on a hung client: its first run may build (Maven, a venv, cmake).
  limit=$(awk -v d="$d" -v w="$w" 'BEGIN {printf "%d", d + w + 60}')
  [ -n "${ran[$lang]:-}" ] || limit=1800
  t0=$(date +%s.%N)
  c0=$(cpu_ticks "$calcd_pid")
  if [ "$lang" = go ]; then
    timeout -k 5 "$limit" "$work/calc-bench" --transport "$tr" --addr "${addr[$tr]}" --conns 1 --concurrency "$c" \
      --duration "${d}s" --warmup "${w}s" --json >"$work/go.json" 2>"$work/err" &
  else
    timeout -k 5 "$limit" bash "client/$lang/run-bench.sh" --transport "$tr" --addr "${addr[$tr]}" --concurrency "$c" \
      --duration "$d" --warmup "$w" >"$work/out" 2>"$work/err" &
  fi
  client_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  c1=$(cpu_ticks "$calcd_pid")
  t1=$(date +%s.%N)
  ran[$lang]=1
  if [ "$lang" = go ]; then
    if [ -s "$work/go.json" ]; then go_line "$work/go.json" >"$work/out"; else : >"$work/out"; fi
  fi
  line=$(grep '^{' "$work/out" | tail -n 1 || true)
  if ! kill -0 "$calcd_pid" 2>/dev/null; then
    echo "bench-langs: calcd died; the end of its log:" >&2
    tail -n 40 "$work/calcd.log" >&2
    exit 1
  fi
  local why=""
  if [ -z "$line" ] || [ "${line: -1}" != "}" ]; then
    why="no JSON line on stdout"
    line=$(printf '{"lang":"%s","transport":"%s","concurrency":%s,"calls":0,"errors":1,"seconds":0,"calls_per_sec":0,"p50_us":0,"p99_us":0}' "$lang" "$tr" "$c")
  elif [ "$rc" != 0 ]; then
    why="exit status $rc"
  elif ! grep -q '"errors":0[,}]' <<<"$line"; then
    why="errors reported"
  elif grep -q '"calls":0[,}]' <<<"$line"; then
    why="no calls made"
  fi
  if [ -n "$why" ]; then
    echo "bench-langs: $lang $tr c=$c failed ($why): $line" >&2
    tail -n 20 "$work/err" >&2
  fi
  if [ -z "$rec" ]; then
    [ -z "$why" ] || failures+=("$lang $tr c=$c (trial run): $why")
    return 0
  fi
  [ -z "$why" ] || failures+=("$lang $tr c=$c: $why")
  printf '{"kind":"run","calcd_cpu_s":%s,"wall_s":%s,"exit":%s,%s\n' \
    "$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')" "$rc" "${line#\{}" >>"$out"
  printf 'bench-langs: %-7s %-5s c=%-4s %9.0f calls/s  p50 %9.1f µs  p99 %9.1f µs\n' "$lang" "$tr" "$c" \
    "$(num_field calls_per_sec <<<"$line")" "$(num_field p50_us <<<"$line")" "$(num_field p99_us <<<"$line")" >&2
}

if [ "$smoke" = 0 ]; then
  echo "bench-langs: a short trial run of each client first (builds what it needs)" >&2
  for lang in "${langs[@]}"; do
    for tr in tcp grpc; do point "$lang" "$tr" 1 0.2 0; done
  done
fi
for c in "${conc[@]}"; do
  for lang in "${langs[@]}"; do
    for tr in tcp grpc; do point "$lang" "$tr" "$c" "$dur" "$warm" record; done
  done
done
printf '{"kind":"end","load_end":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"

if [ "$smoke" = 1 ]; then
  "$work/benchreport" --langs "$out"
else
  "$work/benchreport" --langs "$out" --benchmarks BENCHMARKS.md
  echo "bench-langs: wrote $out and its table into BENCHMARKS.md (section \"Every language\")" >&2
fi
if [ ${#failures[@]} -gt 0 ]; then
  echo "bench-langs: ${#failures[@]} run(s) failed:" >&2
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "bench-langs: every run succeeded" >&2
