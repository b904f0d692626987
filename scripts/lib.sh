# lib.sh holds what the scripts that start calcd share; source it.

# listen_addr LOG TRANSPORT waits (at most 10 s) for the "listening" record
# of TRANSPORT (tcp, grpc, admin; echofloor's floor) in a server's JSON log
# and prints its address. Without one it prints the log on stderr and
# returns 1.
listen_addr() {
  local a
  for _ in $(seq 100); do
    a=$(sed -n "s/.*\"msg\":\"listening\",\"transport\":\"$2\",\"addr\":\"\([^\"]*\)\".*/\1/p" "$1" | head -n 1)
    if [ -n "$a" ]; then
      echo "$a"
      return 0
    fi
    sleep 0.1
  done
  echo "no $2 listening address in $1:" >&2
  cat "$1" >&2
  return 1
}

# json_str S prints S as a JSON string.
json_str() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\n'/ }
  printf '"%s"' "$s"
}

# results_meta SCRIPT COMMAND [FIELDS] prints the "meta" record that starts a
# benchmark script's results file (JSON lines, read by bench/cmd/benchreport):
# the script, the date, the commit (and whether the tree is dirty), the
# machine, the load average, the command and the Go version, then FIELDS
# (',"name":value' pairs) as they are.
results_meta() {
  local commit dirty=false model
  commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || dirty=true
  model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
  printf '{"kind":"meta","script":"%s","date":"%s","commit":"%s","dirty":%s,"nproc":%s,"cpu_model":%s,"load_start":"%s","command":%s,"go":%s%s}\n' \
    "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$dirty" "$(nproc)" "$(json_str "$model")" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(json_str "$2")" "$(json_str "$(go env GOVERSION)")" "${3:-}"
}

# results_end prints the "end" record of a results file: the load average.
results_end() { printf '{"kind":"end","load_end":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)"; }
