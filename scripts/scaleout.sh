#!/usr/bin/env bash
# scaleout.sh runs three calcd on loopback ports behind each of three
# topologies, puts a steady load on them with calc-bench over both transports,
# SIGTERMs one calcd, restarts it, SIGKILLs another, restarts it, and prints
# per topology and transport: calls sent, succeeded, failed by code and
# retried; the calls that failed across the SIGTERM drain and after the
# SIGKILL; the time from each restart until the restarted calcd served calls
# again; and the share of calls each calcd served before the first signal and
# after the restarts, once connection ageing has run.
#
# Topologies:
#   client   calc-bench balances itself: --addr a,b,c (raw TCP: tcpconn's
#            round robin; gRPC: round_robin over a manual resolver)
#   haproxy  deploy/haproxy/haproxy.cfg: mode tcp for raw TCP, proto h2 for
#            gRPC, health checks on each calcd's /readyz
#   nginx    deploy/nginx/nginx.conf: stream {} for raw TCP, grpc_pass for
#            gRPC, passive health only (nginx open source has no active checks)
#
# The proxies run as this script's own processes, on free loopback ports, from
# the committed files with the ports put in by sed. HAProxy and nginx (with
# libnginx-mod-stream) are installed from Debian when missing (as root, or with
# sudo); a service the install starts is stopped again.
#
# calcd runs with --max-connection-age 2s --max-connection-age-grace 2s
# --drain-delay 1s. Each load is open loop (--rate) with retries on (calc's
# default) and, in the full run, a second load with --retry=false beside it.
#
# Usage: scripts/scaleout.sh [--short]
#   --short (or SCALEOUT_SHORT=1): CI's version, short phases and retries on
#            only, about 15 s per topology.
# Environment:
#   SCALEOUT_TOPOLOGIES="client haproxy nginx"   which to run
#   SCALEOUT_RATE=N      calls/s of each load (default 800; 400 with --short)
#   SCALEOUT_KEEP=1      keep the work directory (logs, reports, timelines)
#
# It exits 1 when a target that does not depend on timing is missed: a call
# failed across the SIGTERM drain with retries on, a restarted calcd served no
# call, or a calcd served no call once ageing had run. The timing and balance
# targets (recovery under 2 s, shares within ±20%) are printed, not enforced.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

short=${SCALEOUT_SHORT:-0}
for arg in "$@"; do
  case $arg in
  --short) short=1 ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "scaleout: unknown argument $arg (try --help)" >&2
    exit 2
    ;;
  esac
done
topologies=${SCALEOUT_TOPOLOGIES:-client haproxy nginx}

# The schedule, in ms from the start of the load: the "before" shares are
# measured from before0 to term; calcd1 gets SIGTERM at term and is restarted
# at restart1 (once it has exited); calcd2 gets SIGKILL at kill and is
# restarted at restart2; the "after" shares are measured from after0 to end.
# From restart2 to after0, at least 5 s: ageing has run (connections are
# 2 s old at most), and a restarted calcd has had time to be found again
# (nginx tries a failed server again 1-2 s later, and its raw TCP clients
# come only when their connections age out).
if [ "$short" = 1 ]; then
  before0=1000 term=3000 restart1=5000 kill=6500 restart2=7000 after0=12000 end=14000
  rate=${SCALEOUT_RATE:-400} retry_modes="on"
else
  before0=1000 term=5000 restart1=8000 kill=11000 restart2=12000 after0=18000 end=24000
  rate=${SCALEOUT_RATE:-800} retry_modes="on off"
fi
conns=6 concurrency=24
calcd_flags=(--max-connection-age 2s --max-connection-age-grace 2s --drain-delay 1s --shutdown-timeout 5s)
bench_secs=$(((end + 999) / 1000 + 1)) # the load outlasts the schedule

for tool in go curl python3 awk sed; do
  command -v "$tool" >/dev/null || {
    echo "scaleout: $tool is required" >&2
    exit 1
  }
done

source scripts/lib.sh

work=$(mktemp -d)
chmod 755 "$work" # nginx's workers (not root) reach their temp directories in it
bin=$work/bin
pids=() # every process this script started and may still have to end
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    wait_exit "$p" 5 || kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "${SCALEOUT_KEEP:-0}" = 1 ]; then
    echo "scaleout: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf 'scaleout: %s\n' "$*" >&2; }

# --- installing the proxies --------------------------------------------------

# running PIDFILE prints the PID in PIDFILE if that process runs.
running() {
  local p
  p=$(cat "$1" 2>/dev/null) || return 0
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "$p"; fi
}

# install_proxies installs haproxy, nginx and nginx's stream module from
# Debian when missing, and stops the services the install itself started.
install_proxies() {
  local need=()
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v nginx >/dev/null || need+=(nginx)
  if ! command -v nginx >/dev/null ||
    { nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' && [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; }; then
    need+=(libnginx-mod-stream)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
      log "${need[*]} missing, and installing them needs root or sudo"
      exit 1
    }
    sudo=sudo
  fi
  local before_nginx before_haproxy
  before_nginx=$(running /run/nginx.pid)
  before_haproxy=$(running /run/haproxy.pid)
  log "installing ${need[*]} (Debian)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  local svc before now
  for svc in nginx haproxy; do
    before=$before_nginx
    [ "$svc" = haproxy ] && before=$before_haproxy
    now=$(running "/run/$svc.pid")
    if [ -n "$now" ] && [ -z "$before" ]; then
      log "stopping the $svc service the install started (pid $now)"
      $sudo kill "$now" || true
    fi
  done
}

# --- processes ---------------------------------------------------------------

now_ms() { date +%s%3N; }

# sleep_until MS sleeps until the Unix time MS (in ms), if it is ahead.
sleep_until() {
  local d=$(($1 - $(now_ms)))
  if [ "$d" -gt 0 ]; then sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"; fi
}

# free_ports N prints N free loopback ports.
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# wait_port PORT waits (at most 10 s) until something accepts on 127.0.0.1:PORT.
wait_port() {
  local i
  for i in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# wait_exit PID SECONDS waits for PID to exit and reports whether it did.
wait_exit() {
  local i
  for i in $(seq $(($2 * 10))); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# forget PID drops PID from the processes cleanup ends.
forget() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

declare -A tcp_port grpc_port admin_port calcd_pid generation

# start_calcd I starts calcd I on its ports (free ones the first time).
start_calcd() {
  local i=$1 logf
  generation[$i]=$((${generation[$i]:-0} + 1))
  logf=$work/$topo-calcd$i.${generation[$i]}.log
  "$bin/calcd" --tcp-addr "127.0.0.1:${tcp_port[$i]:-0}" --grpc-addr "127.0.0.1:${grpc_port[$i]:-0}" \
    --admin-addr "127.0.0.1:${admin_port[$i]:-0}" "${calcd_flags[@]}" 2>"$logf" &
  calcd_pid[$i]=$!
  pids+=("$!")
  disown "$!" # bash says nothing when one is killed; wait_exit sees it go
  local a
  a=$(listen_addr "$logf" tcp) || return 1
  tcp_port[$i]=${a##*:}
  a=$(listen_addr "$logf" grpc) || return 1
  grpc_port[$i]=${a##*:}
  a=$(listen_addr "$logf" admin) || return 1
  admin_port[$i]=${a##*:}
}

# stop_calcd I SIGNAL sends SIGNAL to calcd I and waits (at most 10 s) for it
# to exit; it is killed if it has not.
stop_calcd() {
  local p=${calcd_pid[$1]}
  kill -s "$2" "$p" 2>/dev/null || true
  if ! wait_exit "$p" 10; then
    problems+=("$topo: calcd$1 (pid $p) had not exited 10 s after SIG$2")
    kill -KILL "$p" 2>/dev/null || true
  fi
  forget "$p"
}

# handled I prints the calls calcd I has handled over raw TCP and over gRPC
# (grpc_server_handled_total on its admin port), or "0 0" if it cannot say.
handled() {
  local m
  m=$(curl -sf --max-time 1 "http://127.0.0.1:${admin_port[$1]}/metrics" 2>/dev/null) || m=""
  awk '/^grpc_server_handled_total\{/ { if ($0 ~ /transport="tcp"/) t += $NF; else if ($0 ~ /transport="grpc"/) g += $NF }
    END { printf "%d %d\n", t, g }' <<<"$m"
}

# poll_recovery I SINCE DEADLINE FILE writes to FILE the ms from SINCE until
# calcd I had served a call over raw TCP and over gRPC ("-" for none by
# DEADLINE), looking every 50 ms.
poll_recovery() {
  local i=$1 since=$2 deadline=$3 file=$4 t g now rt=- rg=-
  while now=$(now_ms) && [ "$now" -lt "$deadline" ]; do
    read -r t g < <(handled "$i")
    if [ "$rt" = - ] && [ "$t" -gt 0 ]; then rt=$((now - since)); fi
    if [ "$rg" = - ] && [ "$g" -gt 0 ]; then rg=$((now - since)); fi
    if [ "$rt" != - ] && [ "$rg" != - ]; then break; fi
    sleep 0.05
  done
  echo "$rt $rg" >"$file"
}

# render FILE OUT writes the committed proxy configuration FILE to OUT with
# this run's ports: the proxy's (4000, 50051, 8404) and the three calcd's
# (4001-4003, 50052-50054, admin 9465-9467). Two passes, through
# placeholders, so that no port put in is mistaken for one to replace.
render() {
  local i to_marks=() from_marks=()
  to_marks+=(-e 's/127\.0\.0\.1:4000\b/@PTCP@/g' -e 's/127\.0\.0\.1:50051\b/@PGRPC@/g' -e 's/127\.0\.0\.1:8404\b/@PSTATS@/g')
  from_marks+=(-e "s/@PTCP@/127.0.0.1:$proxy_tcp/g" -e "s/@PGRPC@/127.0.0.1:$proxy_grpc/g" -e "s/@PSTATS@/127.0.0.1:$proxy_stats/g")
  for i in 1 2 3; do
    to_marks+=(-e "s/127\.0\.0\.1:400$i\b/@TCP$i@/g" -e "s/127\.0\.0\.1:5005$((i + 1))\b/@GRPC$i@/g" -e "s/\bport 946$((i + 4))\b/@ADMIN$i@/g")
    from_marks+=(-e "s/@TCP$i@/127.0.0.1:${tcp_port[$i]}/g" -e "s/@GRPC$i@/127.0.0.1:${grpc_port[$i]}/g" -e "s/@ADMIN$i@/port ${admin_port[$i]}/g")
  done
  sed "${to_marks[@]}" "$1" | sed "${from_marks[@]}" >"$2"
  if grep -q '@[A-Z]*[0-9]*@' "$2"; then
    log "rendering $1 left a placeholder"
    exit 1
  fi
}

# start_proxy starts this topology's proxy, if any, and sets the addresses
# the loads use.
start_proxy() {
  proxy_pid=""
  case $topo in
  client)
    addr_tcp="127.0.0.1:${tcp_port[1]},127.0.0.1:${tcp_port[2]},127.0.0.1:${tcp_port[3]}"
    addr_grpc="127.0.0.1:${grpc_port[1]},127.0.0.1:${grpc_port[2]},127.0.0.1:${grpc_port[3]}"
    return 0
    ;;
  haproxy)
    render deploy/haproxy/haproxy.cfg "$work/haproxy.cfg"
    haproxy -c -q -f "$work/haproxy.cfg"
    haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
    proxy_pid=$!
    ;;
  nginx)
    render deploy/nginx/nginx.conf "$work/nginx.conf"
    mkdir -p "$work/nginx"
    # Temporary files in the work directory; the stream module loaded only
    # where it is a dynamic module.
    sed -i "s|^http {|http {\n    client_body_temp_path $work/nginx/body;\n    proxy_temp_path $work/nginx/proxy;\n    fastcgi_temp_path $work/nginx/fastcgi;\n    uwsgi_temp_path $work/nginx/uwsgi;\n    scgi_temp_path $work/nginx/scgi;|" "$work/nginx.conf"
    if ! nginx -V 2>&1 | grep -q -- '--with-stream=dynamic'; then
      sed -i '/^load_module .*ngx_stream_module/d' "$work/nginx.conf"
    fi
    local g="daemon off; pid $work/nginx.pid; error_log $work/nginx.log warn;"
    nginx -t -q -c "$work/nginx.conf" -g "$g"
    nginx -c "$work/nginx.conf" -g "$g" 2>>"$work/nginx.log" &
    proxy_pid=$!
    ;;
  esac
  pids+=("$proxy_pid")
  addr_tcp=127.0.0.1:$proxy_tcp
  addr_grpc=127.0.0.1:$proxy_grpc
  wait_port "$proxy_tcp" && wait_port "$proxy_grpc" || {
    log "$topo did not listen on $proxy_tcp and $proxy_grpc"
    cat "$work/$topo.log" >&2
    exit 1
  }
  if [ "$topo" = haproxy ]; then
    # Wait (at most 10 s) for the health checks to find all six servers UP.
    local up=0 i
    for i in $(seq 100); do
      up=$(curl -sf --max-time 1 "http://127.0.0.1:$proxy_stats/;csv" | awk -F, '$1 ~ /^calcd_/ && $2 ~ /^calcd[0-9]/ && $18 == "UP"' | wc -l) || up=0
      [ "$up" -eq 6 ] && break
      sleep 0.1
    done
    [ "$up" -eq 6 ] || problems+=("haproxy: $up of 6 servers UP after 10 s")
  fi
}

stop_proxy() {
  [ -n "$proxy_pid" ] || return 0
  kill "$proxy_pid" 2>/dev/null || true
  wait_exit "$proxy_pid" 10 || kill -KILL "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
  forget "$proxy_pid"
}

# --- figures -----------------------------------------------------------------

# json FILE KEY prints a number field of a calc-bench JSON report.
json() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" "$1"; }

# errors FILE prints the failed calls of a report by code ("none" if none).
errors() {
  local e
  e=$(sed -n 's/.*"errors":{\([^}]*\)}.*/\1/p' "$1" | tr -d '"' | sed 's/:/ /g; s/,/, /g')
  echo "${e:-none}"
}

# first_errors FILE NAME prints, for a report with failures, the message of
# the first failure of each code, as a note on row NAME.
first_errors() {
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for code, msg in sorted((r.get("first_errors") or {}).items()):
    print("%s: first %s: %s" % (sys.argv[2], code, " ".join(msg.split())))' "$1" "$2"
}

# failed_in FILE FROM TO prints the failed calls of a timeline in the
# intervals ending after FROM and at or before TO (ms), and the end of the
# last such interval with failures, in ms after FROM ("-" for none).
failed_in() {
  awk -v from="$2" -v to="$3" '!/^#/ && $1 > from && $1 <= to { n += $3; if ($3 > 0) last = $1 - from }
    END { printf "%d %s\n", n, (n > 0 ? last : "-") }' "$1"
}

# shares A B prints each calcd's share, in %, of the calls handled between
# two samples (each "tcp grpc" per calcd, space separated: t1 g1 t2 g2 t3 g3)
# for the transport in column C (1 tcp, 2 grpc): "34/33/33 ±3%", the
# largest distance from an equal share.
shares() {
  awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= 3; i++) { d[i] = y[2 * i - 2 + c] - x[2 * i - 2 + c]; if (d[i] < 0) d[i] = y[2 * i - 2 + c]; s += d[i] }
    if (s == 0) { print "no calls"; exit }
    worst = 0
    for (i = 1; i <= 3; i++) { p[i] = 100 * d[i] / s; dev = (p[i] - 100 / 3) / (100 / 3) * 100; if (dev < 0) dev = -dev; if (dev > worst) worst = dev }
    printf "%.0f/%.0f/%.0f ±%.0f%%\n", p[1], p[2], p[3], worst
  }'
}

# sample prints the handled counts of the three calcd: t1 g1 t2 g2 t3 g3.
sample() { echo "$(handled 1) $(handled 2) $(handled 3)"; }

# --- the run -----------------------------------------------------------------

install_proxies
mkdir -p "$bin"
log "building calcd and calc-bench"
go build -o "$bin/calcd" ./server/cmd/calcd
go build -o "$bin/calc-bench" ./bench/cmd/calc-bench

problems=()
rows=()
notes=()
command_line=scripts/scaleout.sh
if [ "$short" = 1 ]; then command_line+=" --short"; fi
for topo in $topologies; do
  case $topo in client | haproxy | nginx) ;; *)
    log "unknown topology $topo (client, haproxy or nginx)"
    exit 2
    ;;
  esac
  log "$topo: starting three calcd"
  unset tcp_port grpc_port admin_port calcd_pid generation
  declare -A tcp_port grpc_port admin_port calcd_pid generation
  for i in 1 2 3; do start_calcd "$i"; done
  read -r proxy_tcp proxy_grpc proxy_stats < <(free_ports 3)
  start_proxy

  loads=()
  for tr in tcp grpc; do
    for mode in $retry_modes; do
      name=$topo-$tr-$mode
      addr=$addr_tcp
      [ "$tr" = grpc ] && addr=$addr_grpc
      retry=true
      [ "$mode" = off ] && retry=false
      "$bin/calc-bench" --transport "$tr" --addr "$addr" --conns "$conns" --concurrency "$concurrency" --rate "$rate" \
        --timeout 5s --warmup 0s --duration "${bench_secs}s" --retry="$retry" --timeline "$work/$name.timeline" --json \
        >"$work/$name.json" 2>"$work/$name.err" &
      pids+=("$!")
      loads+=("$name:$!")
    done
  done
  t0=$(now_ms)
  log "$topo: load started (${rate} calls/s each: ${loads[*]%%:*})"

  sleep_until $((t0 + before0))
  s_before0=$(sample)
  sleep_until $((t0 + term))
  s_before1=$(sample)
  t_term=$(now_ms)
  log "$topo: SIGTERM calcd1"
  stop_calcd 1 TERM
  sleep_until $((t0 + restart1))
  t_restart1=$(now_ms)
  start_calcd 1
  log "$topo: calcd1 restarted"
  # Until after0: a client's reconnection backoff (1 s, then 1.6 s, ±20%)
  # may outlast the next step.
  poll_recovery 1 "$t_restart1" $((t0 + after0)) "$work/$topo-recovery1" &
  poll1=$!
  pids+=("$poll1")

  sleep_until $((t0 + kill))
  t_kill=$(now_ms)
  log "$topo: SIGKILL calcd2"
  stop_calcd 2 KILL
  sleep_until $((t0 + restart2))
  t_restart2=$(now_ms)
  start_calcd 2
  log "$topo: calcd2 restarted"
  poll_recovery 2 "$t_restart2" $((t0 + after0)) "$work/$topo-recovery2" &
  poll2=$!
  pids+=("$poll2")

  sleep_until $((t0 + after0))
  for p in "$poll1" "$poll2"; do
    wait "$p" || true
    forget "$p"
  done
  s_after0=$(sample)
  sleep_until $((t0 + end))
  s_after1=$(sample)
  t_end=$(now_ms)
  log "$topo: waiting for the loads to end"
  for l in "${loads[@]}"; do
    wait "${l#*:}" || true # calc-bench exits 1 when a call failed
    forget "${l#*:}"
  done
  stop_proxy
  for i in 1 2 3; do stop_calcd "$i" TERM; done

  read -r rec1_tcp rec1_grpc <"$work/$topo-recovery1"
  read -r rec2_tcp rec2_grpc <"$work/$topo-recovery2"
  for tr in tcp grpc; do
    col=1 rec1=$rec1_tcp rec2=$rec2_tcp
    [ "$tr" = grpc ] && col=2 rec1=$rec1_grpc rec2=$rec2_grpc
    before=$(shares "$s_before0" "$s_before1" "$col")
    after=$(shares "$s_after0" "$s_after1" "$col")
    for mode in $retry_modes; do
      name=$topo-$tr-$mode
      rep=$work/$name.json
      if [ ! -s "$rep" ]; then
        problems+=("$name: calc-bench printed no report: $(tail -n 3 "$work/$name.err" | tr '\n' ' ')")
        continue
      fi
      read -r drain_failed _ < <(failed_in "$work/$name.timeline" "$t_term" "$t_kill")
      read -r kill_failed kill_last < <(failed_in "$work/$name.timeline" "$t_kill" "$t_end")
      if [ "$kill_last" != - ]; then kill_failed+=" (last +$kill_last ms)"; fi
      while IFS= read -r n; do notes+=("$n"); done < <(first_errors "$rep" "$name")
      rows+=("| $topo | $tr | $mode | $(json "$rep" sent) | $(json "$rep" calls) | $(errors "$rep") | $(json "$rep" retries) | $drain_failed | $kill_failed | $rec1 / $rec2 ms | $before | $after |")
      if [ "$mode" = on ] && [ "$drain_failed" != 0 ]; then
        problems+=("$name: $drain_failed calls failed across the SIGTERM drain with retries on")
      fi
    done
    [ "$rec1" != - ] || problems+=("$topo $tr: restarted calcd1 served no call within $(((t0 + after0 - t_restart1))) ms")
    [ "$rec2" != - ] || problems+=("$topo $tr: restarted calcd2 served no call within $(((t0 + after0 - t_restart2))) ms")
    if ! awk -v a="$s_after0" -v b="$s_after1" -v c="$col" 'BEGIN { split(a, x, " "); split(b, y, " ")
      for (i = 1; i <= 3; i++) if (y[2 * i - 2 + c] - x[2 * i - 2 + c] <= 0) exit 1 }'; then
      problems+=("$topo $tr: a calcd served no call after ageing (shares $after)")
    fi
  done
done

cat <<EOF

$command_line: three calcd (${calcd_flags[*]}); each load calc-bench --conns $conns --concurrency $concurrency --rate $rate --timeout 5s, $bench_secs s.
calcd1 SIGTERM at $((term / 1000)).$((term % 1000 / 100)) s, restarted at $((restart1 / 1000)).$((restart1 % 1000 / 100)) s; calcd2 SIGKILL at $((kill / 1000)).$((kill % 1000 / 100)) s, restarted at $((restart2 / 1000)).$((restart2 % 1000 / 100)) s.
Shares before: $((before0 / 1000)).$((before0 % 1000 / 100))-$((term / 1000)).$((term % 1000 / 100)) s; after (ageing has run): $((after0 / 1000)).$((after0 % 1000 / 100))-$((end / 1000)).$((end % 1000 / 100)) s.
Recovery: from the restart until the restarted calcd served a call (calcd1 / calcd2), polled every 50 ms.

| topology | transport | retry | sent | succeeded | failed | retried | failed across SIGTERM | failed after SIGKILL | recovery | share before | share after |
|---|---|---|---:|---:|---|---:|---:|---:|---|---|---|
EOF
printf '%s\n' "${rows[@]}"
echo
if [ ${#notes[@]} -gt 0 ]; then
  printf '%s\n' "${notes[@]}"
  echo
fi
if [ ${#problems[@]} -gt 0 ]; then
  printf 'scaleout: FAILED: %s\n' "${problems[@]}" >&2
  SCALEOUT_KEEP=1
  exit 1
fi
echo "scaleout: every target that does not depend on timing was met" >&2
