#!/usr/bin/env bash
# deploy/prometheus/test.sh checks deploy/prometheus and deploy/grafana
# against a real Prometheus and a real calcd:
#   1. promtool check config (prometheus.yml), check rules, test rules (calcd-rules.test.yml), and that every alert
#      has a unit test;
#   2. a Prometheus of its own (127.0.0.1, a temporary config and storage,
#      the rules loaded, scraping every second) scrapes a calcd's admin
#      port; the script makes a known number of calls on each transport, a
#      stream, and two refused connections, waits for a scrape that began
#      after them, and checks the counts Prometheus's query API gives by
#      transport and code exactly; the recording rules evaluate without
#      error and record both transports; calc_ready turns 0 when calcd
#      drains;
#   3. promtool check metrics on calcd's /metrics finds nothing;
#   4. promqlcheck: every metric the rules and the Grafana dashboard name is
#      in that /metrics, and a dashboard naming one that is not fails.
# Debian's prometheus package (prometheus and promtool) is installed when
# missing, without leaving its service running. CALCD and CALC name the
# binaries to test; without them the script builds its own.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source scripts/lib.sh
say() { printf 'deploy/prometheus: %s\n' "$*" >&2; }
fail() {
  say "FAIL: $*"
  exit 1
}

# install_prometheus installs Debian's prometheus (for prometheus and
# promtool) and jq. The package starts its service where it can: a
# policy-rc.d keeps it from starting during the install, and a service
# that runs anyway is stopped and disabled.
install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v jq >/dev/null; then
    return
  fi
  local sudo="" policy=/usr/sbin/policy-rc.d added=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  say "installing Debian's prometheus (and jq)"
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    added=1
  fi
  local rc=0
  {
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus jq
  } >&2 || rc=$?
  if [ -n "$added" ]; then $sudo rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || fail "apt-get install prometheus failed ($rc)"
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service >&2 || true
  elif [ -x /etc/init.d/prometheus ] && $sudo /etc/init.d/prometheus status >/dev/null 2>&1; then
    $sudo /etc/init.d/prometheus stop >&2 || true
  fi
}
install_prometheus

work=$(mktemp -d)
calcd_pid="" prom_pid=""
cleanup() {
  for pid in $prom_pid $calcd_pid; do
    kill "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true # calcd: a second signal exits at once
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${CALCD:-}" ] || [ -z "${CALC:-}" ]; then
  go build -o "$work/calcd" ./server/cmd/calcd
  go build -o "$work/calc" ./client/cmd/calc
  CALCD=$work/calcd CALC=$work/calc
fi

# 1. The files themselves.
cd deploy/prometheus
# (Debian's promtool is built without Kubernetes service discovery, so
# the kubernetes_sd_configs variant in its comments is not checked.)
promtool check config prometheus.yml >&2
promtool check rules calcd-rules.yml >&2
promtool test rules calcd-rules.test.yml >&2
for alert in $(sed -n 's/^ *- alert: *//p' calcd-rules.yml); do
  grep -q "alertname: $alert\$" calcd-rules.test.yml || fail "alert $alert has no test in calcd-rules.test.yml"
done
cd "$root"

# 2. A real Prometheus scraping a real calcd. --drain-delay keeps calcd
# NOT_SERVING, and scraped, for a while after SIGTERM.
"$CALCD" --tcp-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --drain-delay 60s >"$work/calcd.log" 2>&1 &
calcd_pid=$!
tcp=$(listen_addr "$work/calcd.log" tcp)
grpc=$(listen_addr "$work/calcd.log" grpc)
admin=$(listen_addr "$work/calcd.log" admin)

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/calcd-rules.yml
scrape_configs:
  - job_name: calcd
    static_configs:
      - targets: ["$admin"]
EOF
# Prometheus cannot listen on port 0 and say which port it got: take a
# free one, and another if it was taken in between.
for attempt in 1 2 3; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  prom=http://127.0.0.1:$port
  rm -rf "$work/data"
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  for _ in $(seq 150); do
    if curl -sf "$prom/-/ready" >/dev/null 2>&1 || ! kill -0 "$prom_pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if curl -sf "$prom/-/ready" >/dev/null 2>&1; then break; fi
  kill "$prom_pid" 2>/dev/null || true
  wait "$prom_pid" 2>/dev/null || true
  prom_pid=""
  cat "$work/prometheus.log" >&2
  [ "$attempt" -lt 3 ] || fail "prometheus did not start"
done
say "prometheus on $prom scrapes calcd's admin port $admin every second"

# query EXPR prints the instant vector EXPR as "labels value" lines, the
# labels (without __name__ and job/instance) as k=v joined by commas,
# sorted.
query() {
  curl -sf --get --data-urlencode "query=$1" "$prom/api/v1/query" |
    jq -r '.data.result[] | [(.metric | del(.__name__, .job, .instance) | to_entries | map("\(.key)=\(.value)") | join(",")), .value[1]] | join(" ")' |
    sort
}
# expect EXPR WANT checks query's output against WANT exactly.
expect() {
  local got
  got=$(query "$1")
  if [ "$got" != "$2" ]; then
    fail "$(printf '%s\n got:\n%s\n want:\n%s' "$1" "$got" "$2")"
  fi
  say "ok: $1"
}
# wait_for WHAT CMD... runs CMD every 0.2 s until it succeeds, for 30 s at most.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 150); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  fail "timed out waiting for $what"
}
up() { [ "$(query 'up{job="calcd"}')" = " 1" ]; }
wait_for "the first scrape of calcd" up

# The calls: on raw TCP 7 OK and 3 INVALID_ARGUMENT; on gRPC 5 OK and 2
# INVALID_ARGUMENT (calc exits 1 when a call failed); a CalculateStream of
# two messages over raw TCP.
calls() { # calls TRANSPORT ADDR EXPRESSIONS; checks calc's answers
  local out rc=0
  out=$(printf '%s\n' "${@:3}" | "$CALC" --transport "$1" --addr "$2" 2>"$work/calc.err") || rc=$?
  [ "$rc" -eq 1 ] || fail "calc over $1 exited $rc, want 1 (a call failed)"
  [ "$(grep -c . <<<"$out")" -eq "$ok" ] || fail "calc over $1 printed $out, want $ok results"
  [ "$(grep -c 'INVALID_ARGUMENT' "$work/calc.err")" -eq "$bad" ] || fail "calc over $1: $(cat "$work/calc.err"), want $bad INVALID_ARGUMENT"
}
ok=7 bad=3 calls tcp "$tcp" '1 + 1' '2 * 3' '1 / 0' '7 - 2' '2 ^ 10' '(1' '5' '6 / 4' '8 % 3' '9 % 0'
ok=5 bad=2 calls grpc "$grpc" '1 + 1' '2 * (3 + 4)' '1 / 0' '10 / 4' '3 - -2' '2 +' '0.1 + 0.2'
stream=$(printf '%s\n' '{"id":1,"calculation":{"operator":"OPERATOR_ADD","lhs":2,"rhs":3}}' '{"id":2,"calculation":{"operator":"OPERATOR_MULTIPLY","lhs":6,"rhs":7}}' |
  "$CALC" --addr "$tcp" call calculator.v1.CalculatorService/CalculateStream --json)
[ "$stream" = "$(printf '%s\n' '{"id":"1","result":"5"}' '{"id":"2","result":"42"}')" ] || fail "CalculateStream answered $stream"
# Two connections refused: an HTTP request (bad_preface) and calc's magic
# with protocol version 9 (unsupported_version, answered with a GOAWAY
# FAILED_PRECONDITION).
python3 - "$tcp" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
for hello in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"CALC\x09"):
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(hello)
        while s.recv(4096):  # until calcd closes
            pass
EOF
done_at=$(date +%s.%N)

# Wait for a scrape that began after the calls.
scraped_after() {
  local last
  last=$(curl -sf "$prom/api/v1/targets" | jq -r '.data.activeTargets[] | select(.labels.job == "calcd") | .lastScrape')
  [ -n "$last" ] && python3 -c 'import sys, datetime
t = sys.argv[1]
if "." in t:  # Python parses microseconds at most
    head, frac = t.split(".", 1)
    digits = "".join(c for c in frac if c.isdigit())
    t = head + "." + digits[:6] + frac[len(digits):]
sys.exit(0 if datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() > float(sys.argv[2]) else 1)' "$last" "$done_at"
}
wait_for "a scrape after the calls" scraped_after

svc='grpc_service="calculator.v1.CalculatorService"'
expect "sum by (transport, grpc_code) (grpc_server_handled_total{job=\"calcd\",$svc,grpc_type=\"unary\"})" "$(printf '%s\n' \
  'grpc_code=InvalidArgument,transport=grpc 2' \
  'grpc_code=InvalidArgument,transport=tcp 3' \
  'grpc_code=OK,transport=grpc 5' \
  'grpc_code=OK,transport=tcp 7')"
expect "sum by (transport, grpc_method) (grpc_server_started_total{job=\"calcd\",$svc})" "$(printf '%s\n' \
  'grpc_method=CalculateStream,transport=tcp 1' \
  'grpc_method=Evaluate,transport=grpc 7' \
  'grpc_method=Evaluate,transport=tcp 10')"
expect "grpc_server_handled_total{job=\"calcd\",grpc_method=\"CalculateStream\"}" \
  'grpc_code=OK,grpc_method=CalculateStream,grpc_service=calculator.v1.CalculatorService,grpc_type=bidi_stream,transport=tcp 1'
expect "sum by (transport) (grpc_server_msg_received_total{job=\"calcd\",$svc})" "$(printf '%s\n' 'transport=grpc 7' 'transport=tcp 12')"
expect "sum by (transport) (grpc_server_msg_sent_total{job=\"calcd\",$svc})" "$(printf '%s\n' 'transport=grpc 5' 'transport=tcp 9')"
expect "sum by (transport) (grpc_server_handling_seconds_count{job=\"calcd\",$svc,grpc_type=\"unary\"})" "$(printf '%s\n' 'transport=grpc 7' 'transport=tcp 10')"
expect 'calc_tcp_connections_refused_total{job="calcd"} > 0' "$(printf '%s\n' 'reason=bad_preface,transport=tcp 1' 'reason=unsupported_version,transport=tcp 1')"
expect 'calc_tcp_goaways_sent_total{job="calcd"} > 0' 'code=FailedPrecondition,transport=tcp 1'
expect 'count(calc_tcp_goaways_sent_total{job="calcd"})' ' 34' # every code, on tcp and ws, from the start
expect 'calc_tcp_calls_refused_total{job="calcd"} > 0' ''
expect 'calc_ready{job="calcd"}' ' 1'

# The recording rules have run on these series without an error.
recorded() { [ "$(query "count by (transport) (job_transport_method:grpc_server_handled:rate5m{$svc})")" = "$(printf '%s\n' 'transport=grpc 1' 'transport=tcp 2')" ]; }
wait_for "the recording rules to record both transports" recorded
rules=$(curl -sf "$prom/api/v1/rules")
n=$(jq '[.data.groups[].rules[]] | length' <<<"$rules")
[ "$n" -eq "$(grep -cE '^ *- (record|alert):' deploy/prometheus/calcd-rules.yml)" ] || fail "prometheus loaded $n rules"
bad_rules=$(jq -r '.data.groups[].rules[] | select(.health != "ok") | "\(.name): \(.health) \(.lastError)"' <<<"$rules")
[ -z "$bad_rules" ] || fail "rules failing in prometheus: $bad_rules"
say "ok: prometheus evaluates all $n rules without error"

# 3. promtool's lint of calcd's /metrics.
curl -sf "http://$admin/metrics" >"$work/metrics.txt"
lint=$(promtool check metrics <"$work/metrics.txt" 2>&1) || fail "promtool check metrics: $lint"
[ -z "$lint" ] || fail "promtool check metrics: $lint"
say "ok: promtool check metrics finds nothing in calcd's /metrics ($(grep -c '^# TYPE' "$work/metrics.txt") families)"

# 4. Every metric the rules and the dashboard name is in that /metrics.
(cd deploy/prometheus/promqlcheck && go build -ldflags='-s -w' -o "$work/promqlcheck" .)
"$work/promqlcheck" -metrics "$work/metrics.txt" -rules deploy/prometheus/calcd-rules.yml -dashboard deploy/grafana/calc-dashboard.json >&2
sed 's/calc_tcp_streams_open/calc_tcp_stream_open/' deploy/grafana/calc-dashboard.json >"$work/typo.json"
if "$work/promqlcheck" -metrics "$work/metrics.txt" -dashboard "$work/typo.json" 2>"$work/typo.err"; then
  fail "promqlcheck passed a dashboard naming calc_tcp_stream_open"
fi
grep -q 'calc_tcp_stream_open is not in' "$work/typo.err" || fail "promqlcheck: $(cat "$work/typo.err")"
say "ok: promqlcheck fails a dashboard that names a metric calcd does not export"

# The drain: on SIGTERM, calcd reports NOT_SERVING and Prometheus sees
# calc_ready 0 while calcd still serves.
kill -TERM "$calcd_pid"
not_ready() { [ "$(query 'calc_ready{job="calcd"}')" = " 0" ]; }
wait_for "calc_ready 0 in prometheus after SIGTERM" not_ready
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/readyz")" = 503 ] || fail "/readyz is not 503 while draining"
[ "$(echo '1 + 1' | "$CALC" --addr "$tcp")" = 2 ] || fail "calcd stopped serving during --drain-delay"
say "ok: draining, calc_ready is 0 in prometheus, /readyz 503, calls still served"
echo "deploy/prometheus: 1 passed, 0 failed" >&2
