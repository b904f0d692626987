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
