#!/usr/bin/env bash
# test.sh tests the Wireshark dissector tools/wireshark/calc.lua with tshark,
# installing tshark (Debian package) if it is missing:
#   1. golden output: vectors2pcap writes the wire test vectors
#      (testdata/wire/vectors.json) as pcaps: vectors.pcap (a connection per
#      vector, in 32-byte segments), session.pcap (one conversation),
#      malformed.pcap (malformed frames the vectors lack) and snappy.pcap
#      (snappy encodings Go's encoder never emits). tshark -V -O calc
#      of each must equal tools/wireshark/testdata/<name>.txt, in one pass and
#      in two (-2), which shows the second pass sees what the first worked out;
#   2. malformed input: every malformed frame carries an expert error, tshark
#      exits 0 and reports no Lua error;
#   3. a live capture on loopback of a real calcd and the calc client on a
#      random port (found by the preface heuristic): a unary call, a
#      snappy-compressed one, an error status and a CalculateStream, checked
#      with display filters, without any expert error or Lua error.
# UPDATE=1 rewrites the golden files instead of comparing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

if ! command -v tshark >/dev/null || ! command -v dumpcap >/dev/null; then
  echo "wireshark: installing tshark" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  # tshark's package asks whether non-root users may capture: no.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tshark >&2
fi
tshark --version | head -1 >&2

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail=0
check() { # check DESCRIPTION COMMAND...: run COMMAND, report and count a failure
  local what=$1
  shift
  if "$@"; then
    echo "ok    $what" >&2
  else
    echo "FAIL  $what" >&2
    fail=1
  fi
}

# ts runs tshark with calc.lua and calc's protos on the protobuf search path.
# Its stderr goes to $tmp/stderr.txt, checked for Lua errors at the end.
ts() {
  TZ=UTC tshark -X "lua_script:$here/calc.lua" \
    -o "uat:protobuf_search_paths:\"$repo/proto\",\"TRUE\"" \
    -o "uat:protobuf_search_paths:\"$here/proto\",\"TRUE\"" \
    -o protobuf.preload_protos:TRUE -o protobuf.pbf_as_hf:TRUE "$@" 2>>"$tmp/stderr.txt"
}
# count FILE FILTER prints the number of packets of FILE that match FILTER.
count() { ts -r "$1" -Y "$2" | wc -l; }
at_least() { [ "$(count "$1" "$2")" -ge "$3" ]; }
none() { [ "$(count "$1" "$2")" -eq 0 ]; }

echo "==> golden output of the wire vectors" >&2
go run ./tools/wireshark/vectors2pcap -vectors testdata/wire/vectors.json -out "$tmp"
for name in vectors session malformed snappy; do
  ts -r "$tmp/$name.pcap" -V -O calc >"$tmp/$name.txt"
  ts -2 -r "$tmp/$name.pcap" -V -O calc >"$tmp/$name.2.txt"
  golden="$here/testdata/$name.txt"
  if [ "${UPDATE:-}" = 1 ]; then
    mkdir -p "$here/testdata"
    cp "$tmp/$name.txt" "$golden"
    echo "wrote $golden" >&2
  else
    check "$name.pcap matches testdata/$name.txt" diff -u "$golden" "$tmp/$name.txt"
  fi
  check "$name.pcap: two passes show what one does" diff -u "$tmp/$name.txt" "$tmp/$name.2.txt"
done

echo "==> malformed input" >&2
m="$tmp/malformed.pcap"
check "tshark exits 0 on malformed.pcap" ts -r "$m" -q
# One connection per malformed frame: each must hold an error.
streams=$(ts -r "$m" -T fields -e tcp.stream | sort -u | wc -l)
bad=$(ts -r "$m" -Y '_ws.expert.severity == error' -T fields -e tcp.stream | sort -u | wc -l)
check "every malformed connection ($bad of $streams) has an expert error" [ "$bad" -eq "$streams" ]
v="$tmp/vectors.pcap"
for f in calc.frame_too_small calc.frame_too_large calc.unknown_kind calc.corrupt_snappy calc.snappy_too_large \
  calc.bad_magic; do
  check "vectors.pcap has $f" at_least "$v" "$f" 1
done
for f in calc.bad_header calc.bad_payload calc.corrupt_snappy; do
  check "malformed.pcap has $f" at_least "$m" "$f" 1
done
check "session.pcap has no expert error" none "$tmp/session.pcap" '_ws.expert.severity == error'
check "snappy.pcap: 3 hand-made snappy blocks decoded" [ "$(count "$tmp/snappy.pcap" \
  "pbf.calculator.v1.EvaluateRequest.expression == \"$(printf '1 + %.0s' $(seq 25))1\"")" -eq 3 ]
check "snappy.pcap has no expert error" none "$tmp/snappy.pcap" '_ws.expert.severity == error'

echo "==> live capture of calc over loopback" >&2
go build -o "$tmp/bin/" ./server/cmd/calcd ./client/cmd/calc ./bench/cmd/calc-bench
"$tmp/bin/calcd" --tcp-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --log-level info 2>"$tmp/calcd.log" &
pids+=($!)
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/.*"msg":"listening","transport":"tcp","addr":"\([^"]*\)".*/\1/p' "$tmp/calcd.log")
  [ -n "$addr" ] && break
  sleep 0.1
done
if [ -z "$addr" ]; then
  cat "$tmp/calcd.log" >&2
  echo "calcd did not log its raw TCP address" >&2
  exit 1
fi
port=${addr##*:}
live="$tmp/live.pcapng"
# Capturing needs root (or the setuid dumpcap the package did not install).
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo dumpcap -q -i lo -f "tcp port $port" -w "$live" 2>"$tmp/dumpcap.log" &
dumpcap_pid=$!
pids+=("$dumpcap_pid")
for _ in $(seq 100); do
  grep -q "Capturing on" "$tmp/dumpcap.log" && break
  sleep 0.1
done
sleep 0.5 # dumpcap says "Capturing on" as it opens the interface; let the filter settle

c="$tmp/bin/calc"
long=$(printf '1 + %.0s' $(seq 100))1 # 401 bytes: over COMPRESS_THRESHOLD (256), so snappy-compressed
"$c" --addr "$addr" '2 + 3' >"$tmp/calc.out"
"$c" --addr "$addr" "$long" >>"$tmp/calc.out"
if "$c" --addr "$addr" '1 / 0' >>"$tmp/calc.out" 2>&1; then
  echo "calc '1 / 0' succeeded" >&2
  fail=1
fi
"$tmp/bin/calc-bench" --addr "$addr" --rpc stream --count 5 --warmup 0 --duration 5s >"$tmp/bench.out" 2>&1
sleep 0.5
kill -INT "$dumpcap_pid"
wait "$dumpcap_pid" || true
if [ -n "$sudo" ]; then sudo chown "$(id -u)" "$live"; fi
if [ ! -s "$live" ]; then
  cat "$tmp/dumpcap.log" >&2
  echo "dumpcap wrote no capture" >&2
  exit 1
fi
cat "$tmp/calc.out" >&2

check "4 connections, each found by its preface" [ "$(count "$live" 'calc.preface.magic == "CALC"')" -eq 4 ]
check "SETTINGS" at_least "$live" 'calc.kind == 0x01 && calc.setting.compress_threshold == 256' 4
check "REQUEST binding Evaluate by name" at_least "$live" \
  'calc.kind == 0x02 && calc.method_name == "/calculator.v1.CalculatorService/Evaluate"' 3
check "unary answer decoded as EvaluateResponse" at_least "$live" \
  'calc.kind == 0x05 && pbf.calculator.v1.EvaluateResponse.result == "5"' 1
check "compressed REQUEST decoded by snappy, its expression shown" at_least "$live" \
  'calc.flags.compressed == 1 && calc.snappy.decoded_length > 256 && pbf.calculator.v1.EvaluateRequest.expression contains "1 + 1 + 1"' 1
check "STATUS INVALID_ARGUMENT for 1 / 0" at_least "$live" \
  'calc.kind == 0x06 && calc.status.code == 3 && pbf.google.rpc.Status.code == 3' 1
check "CalculateStream REQUEST" at_least "$live" \
  'calc.kind == 0x02 && calc.method == "/calculator.v1.CalculatorService/CalculateStream"' 1
check "stream MESSAGEs client → server as CalculateStreamRequest" at_least "$live" \
  'calc.kind == 0x03 && calc.direction == "client → server" && pbm.calculator.v1.CalculateStreamRequest' 5
check "stream MESSAGEs server → client as CalculateStreamResponse" at_least "$live" \
  'calc.kind == 0x03 && calc.direction == "server → client" && pbf.calculator.v1.CalculateStreamResponse.result' 5
check "HALF_CLOSE and STATUS OK end the stream" at_least "$live" \
  'calc.kind == 0x04 || (calc.kind == 0x06 && calc.status.code == 0)' 2
check "no expert error on the live session" none "$live" '_ws.expert.severity == error'
check "no malformed packet on the live session" none "$live" '_ws.malformed || _ws.lua.error'
check "two passes show what one does on the live session" \
  diff <(ts -r "$live" -V -O calc) <(ts -2 -r "$live" -V -O calc)

if grep -Ei "lua.*error|error.*lua|protobuf: error" "$tmp/stderr.txt" >&2; then
  echo "FAIL  tshark reported errors (above)" >&2
  fail=1
else
  echo "ok    no Lua or protobuf error on tshark's stderr" >&2
fi

if [ "$fail" -ne 0 ]; then
  echo "wireshark: FAILED" >&2
  exit 1
fi
echo "wireshark: all passed" >&2
