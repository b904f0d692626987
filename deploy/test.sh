#!/usr/bin/env bash
# deploy/test.sh checks what deploy/ ships, and the Dockerfile, building
# calcd once, with the Dockerfile's own go build line:
#   1. the Dockerfile (deploy/docker/test.sh): its build line run without a
#      Docker engine in the context .dockerignore admits, a static binary,
#      refused by protected mode with the image's defaults, serving as the
#      image's non-root user;
#   2. the systemd unit passes systemd-analyze verify, with ExecStart
#      pointed at that calcd (verify checks that the binary exists);
#   3. Prometheus and Grafana (deploy/prometheus/test.sh): promtool checks
#      and unit tests of the rules, a real Prometheus scraping a real calcd
#      with exact counts by transport and code, promtool check metrics, and
#      every metric the rules and the dashboard name (promqlcheck, whose own
#      tests run first);
#   4. the Kubernetes manifests (deploy/kubernetes/validate, whose own
#      tests run first): strict decoding into k8s.io/api types, the tls
#      overlay applied, and calcd's invariants.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
step() { printf '\n--> deploy: %s\n' "$*" >&2; }
if ! command -v systemd-analyze >/dev/null; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "deploy: installing systemd for systemd-analyze" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/calc" ./client/cmd/calc
export CALC=$work/calc CALCD=$work/calcd

step "Dockerfile"
CALCD_OUT=$CALCD bash deploy/docker/test.sh

step "systemd unit"
sed "s|/usr/local/bin/calcd|$CALCD|" deploy/systemd/calcd.service >"$work/calcd.service"
systemd-analyze verify "$work/calcd.service"
echo "deploy: calcd.service verified" >&2

step "Prometheus rules, a real scrape, the Grafana dashboard"
(cd deploy/prometheus/promqlcheck && go vet ./... && go test -count=1 ./...)
bash deploy/prometheus/test.sh

step "Kubernetes manifests"
(cd deploy/kubernetes/validate && go vet ./... && go test -count=1 ./...)
"$CALCD" --help >"$work/calcd-help.txt" 2>&1
(cd deploy/kubernetes/validate && go build -ldflags='-s -w' -o "$work/validate" .)
"$work/validate" -calcd-help "$work/calcd-help.txt" -dockerfile Dockerfile deploy/kubernetes deploy/kubernetes/tls >&2
echo "deploy: 4 passed, 0 failed" >&2
