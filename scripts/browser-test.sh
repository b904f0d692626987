#!/usr/bin/env bash
# browser-test.sh tests the web page (server/webui) in headless Chromium:
# tools/browsertest, a Go test with chromedp, starts a calcd built from this
# tree on loopback ports and drives the page: expressions with the Connect
# protocol, an error's mark, the history, CalculateStream over the
# WebSocket, a phone-sized screen, a bearer token, and no console error.
#
# It installs Debian's chromium, and fonts-liberation for text to lay out
# the same everywhere, when they are missing (apt-get, as root or with
# sudo). Set BROWSERTEST_SCREENSHOTS=DIR to keep screenshots.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

missing=()
for pkg in chromium fonts-liberation; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "browser-test: installing ${missing[*]} (Debian)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
chromium=$(command -v chromium)
echo "browser-test: $("$chromium" --version 2>/dev/null || echo "$chromium")" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/calcd" ./server/cmd/calcd
cd tools/browsertest
go vet ./...
CALCD="$work/calcd" CHROMIUM="$chromium" go test -count=1 ./...
