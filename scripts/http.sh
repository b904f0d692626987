#!/usr/bin/env bash
# http.sh tests calcd's HTTP port from outside, with the tools a user has:
#   1. buf curl (the pinned one from scripts/tools.sh) over the Connect,
#      gRPC-Web and gRPC protocols: Calculate, Evaluate and an error with its
#      details from the schema (--schema internal/schema/calculator.binpb),
#      CalculateStream over HTTP/2 with prior knowledge, Connect unary over
#      HTTP/1.1, and server reflection instead of a schema;
#   2. the same over HTTPS (a second calcd with --tls-cert; dev certificates
#      from tools/devcerts), HTTP/2 by ALPN;
#   3. every "$ curl" and "$ buf curl" line of README.md's "Over HTTP"
#      section, run as written against calcd (127.0.0.1:8080 replaced by its
#      address), each output compared with the README's as JSON.
# It starts its own calcds on free loopback ports and stops them, and
# installs curl (Debian package) if it is missing. Prints "N passed,
# N failed"; exits non-zero if any check failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/tools.sh
source scripts/lib.sh
if ! command -v curl >/dev/null; then
  echo "http.sh: installing curl" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >&2
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/calcd" ./server/cmd/calcd
start() { # name args...: start a calcd whose log is $work/name.log
  local name=$1
  shift
  "$work/calcd" --grpc-addr 127.0.0.1:0 --tcp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 "$@" 2>"$work/$name.log" &
  pids+=($!)
}
go run ./tools/devcerts -out "$work/certs" >/dev/null
start plain
start tls --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server-key.pem"
addr=$(listen_addr "$work/plain.log" http)
tls_addr=$(listen_addr "$work/tls.log" http)
tls_addr=localhost:${tls_addr##*:} # the certificate's name

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok    $*" >&2; }
bad() { fail=$((fail + 1)); echo "FAIL  $*" >&2; }

# same_json A B: A and B (files) hold the same JSON values, whitespace aside.
same_json() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
def values(path):
    text, out, dec, i = open(path).read(), [], json.JSONDecoder(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        v, i = dec.raw_decode(text, i)
        out.append(v)
sys.exit(0 if values(sys.argv[1]) == values(sys.argv[2]) else 1)
EOF
}

# check NAME WANT_EXIT WANT_JSON_FRAGMENT -- buf curl args...: run buf curl,
# require its exit status to be 0 or not (WANT_EXIT ok|error) and its output
# to contain the fragment (compared with all whitespace removed).
check() {
  local name=$1 want=$2 fragment=$3 rc=0
  shift 4
  buf curl "$@" >"$work/out" 2>"$work/err" || rc=$?
  local got # buf curl prints a response on stdout, an error status on stderr
  got=$(cat "$work/out" "$work/err" | tr -d ' \n')
  if { [ "$want" = ok ] && [ "$rc" -ne 0 ]; } || { [ "$want" = error ] && [ "$rc" -eq 0 ]; }; then
    bad "$name: exit $rc: $(cat "$work/out" "$work/err")"
  elif [[ $got != *"$fragment"* ]]; then
    bad "$name: got $got, want $fragment $(cat "$work/err")"
  else
    ok "$name"
  fi
}

schema=(--schema internal/schema/calculator.binpb)
svc=calculator.v1.CalculatorService
echo "==> buf curl over Connect, gRPC-Web and gRPC" >&2
for scheme in http https; do
  a=$addr opts=()
  if [ "$scheme" = https ]; then a=$tls_addr opts=(--cacert "$work/certs/ca.pem"); fi
  for protocol in connect grpcweb grpc; do
    h2=(--http2-prior-knowledge)
    [ "$scheme" = http ] || h2=() # ALPN picks HTTP/2
    p=(--protocol "$protocol" "${opts[@]}")
    check "$scheme $protocol Calculate" ok '{"result":"5"}' -- "${schema[@]}" "${p[@]}" "${h2[@]}" \
      -d '{"operator":"OPERATOR_ADD","lhs":2,"rhs":3}' "$scheme://$a/$svc/Calculate"
    check "$scheme $protocol Evaluate" ok '{"result":"3.5","exact":true}' -- "${schema[@]}" "${p[@]}" "${h2[@]}" \
      -d '{"expression":"7 / 2"}' "$scheme://$a/$svc/Evaluate"
    check "$scheme $protocol error with details" error '"code":"invalid_argument","message":"divisionbyzero:1/0","details":[{"type":"google.rpc.BadRequest"' \
      -- "${schema[@]}" "${p[@]}" "${h2[@]}" -d '{"operator":"OPERATOR_DIVIDE","lhs":1}' "$scheme://$a/$svc/Calculate"
    printf '%s\n' '{"id":1,"calculation":{"operator":"OPERATOR_ADD","lhs":2,"rhs":3}}' \
      '{"id":2,"calculation":{"operator":"OPERATOR_DIVIDE","lhs":1}}' >"$work/stream.json"
    check "$scheme $protocol CalculateStream" ok '{"id":"1","result":"5"}{"id":"2","error":{"code":3,"message":"divisionbyzero:1/0","field":"rhs"}}' \
      -- "${schema[@]}" "${p[@]}" "${h2[@]}" -d "@$work/stream.json" "$scheme://$a/$svc/CalculateStream"
    check "$scheme $protocol by server reflection" ok '{"result":"1024"}' -- "${p[@]}" "${h2[@]}" \
      -d '{"operator":"OPERATOR_POWER","lhs":2,"rhs":10}' "$scheme://$a/$svc/Calculate"
  done
  if [ "$scheme" = http ]; then
    for protocol in connect grpcweb; do
      check "http $protocol over HTTP/1.1" ok '{"result":"42"}' -- "${schema[@]}" --protocol "$protocol" \
        -d '{"operator":"OPERATOR_MULTIPLY","lhs":6,"rhs":7}' "http://$a/$svc/Calculate"
    done
  fi
done

echo "==> README.md's curl lines (Over HTTP)" >&2
python3 - "$work" <<'EOF'
import pathlib, sys
# The console block of the "Over HTTP" section: each "$ " line and the
# output under it.
work = pathlib.Path(sys.argv[1])
text = pathlib.Path("README.md").read_text()
section = text[text.index("### Over HTTP"):]
section = section[: section.index("\n### ", 1)]
block = section[section.index("```console\n") + len("```console\n"):]
block = block[: block.index("```")]
cases, cmd, out = [], None, []
for line in block.splitlines():
    if line.startswith("$ "):
        if cmd:
            cases.append((cmd, out))
        cmd, out = line[2:], []
    else:
        out.append(line)
if cmd:
    cases.append((cmd, out))
for i, (cmd, out) in enumerate(cases):
    (work / f"readme{i}.sh").write_text(cmd + "\n")
    (work / f"readme{i}.want").write_text("\n".join(out) + "\n")
print(f"{len(cases)} command lines", file=sys.stderr)
EOF
n=0
for f in "$work"/readme*.sh; do
  n=$((n + 1))
  want=${f%.sh}.want
  cmd=$(cat "$f")
  case $cmd in curl\ * | buf\ curl\ *) ;; *)
    bad "README: not a curl or buf curl line: $cmd"
    continue
    ;;
  esac
  if (cd "$root" && bash -c "${cmd//127.0.0.1:8080/$addr}") >"$work/got" 2>"$work/err"; then
    if same_json "$work/got" "$want"; then
      ok "README: $cmd"
    else
      bad "README: $cmd: got $(cat "$work/got" "$work/err"), want $(cat "$want")"
    fi
  else
    bad "README: $cmd failed: $(cat "$work/got" "$work/err")"
  fi
done
[ "$n" -ge 4 ] || bad "README.md's Over HTTP section has $n command lines, want at least 4"

for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || bad "a calcd died: $(cat "$work"/*.log)"
done
echo "http: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
