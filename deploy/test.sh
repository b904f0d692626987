#!/usr/bin/env bash
# deploy/test.sh checks what deploy/ ships: the systemd unit passes
# systemd-analyze verify, with ExecStart pointed at a freshly built calcd
# (verify checks that the binary exists).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if ! command -v systemd-analyze >/dev/null; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "deploy: installing systemd for systemd-analyze" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/calcd" ./server/cmd/calcd
sed "s|/usr/local/bin/calcd|$work/calcd|" deploy/systemd/calcd.service >"$work/calcd.service"
systemd-analyze verify "$work/calcd.service"
echo "deploy: calcd.service verified" >&2
