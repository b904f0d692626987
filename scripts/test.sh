#!/usr/bin/env bash
# test.sh runs every test of calc, installing what it needs itself:
#   1. schema: buf format, buf lint, buf breaking against the previous commit,
#      and a regeneration of gen/ that must change nothing;
#   2. Go: gofmt, go vet (also for windows and darwin), go test -race of every
#      package (unit, fuzz corpora, loopback and process tests, goroutine-leak
#      checks), a short fuzzing run of each parser and of a server
#      connection driven by arbitrary frames (scripts/fuzz.sh, itself
#      tested by scripts/fuzz_selftest.sh), and one pass of every
#      benchmark as a smoke test;
#   3. the HTTP port from outside (scripts/http.sh): buf curl over Connect,
#      gRPC-Web and gRPC, plaintext and TLS, and README.md's curl lines;
#   4. the Wireshark dissector (tools/wireshark/test.sh): tshark's output of
#      the wire vectors against golden files, malformed input, and a live
#      loopback capture of calc talking to calcd;
#   5. deploy: the systemd unit, the Dockerfile, the Kubernetes manifests,
#      Prometheus rules and a real Prometheus scrape (deploy/test.sh), and three calcd behind
#      client-side balancing, HAProxy and nginx through a SIGTERM drain, a
#      SIGKILL and restarts (scripts/scaleout.sh --short, which installs
#      haproxy and nginx from Debian when missing);
#   6. interop: Java, Python, Node/TypeScript and C++ clients against a real
#      calcd over gRPC, raw TCP and (Node) WebSocket (scripts/interop.sh), and
#      the C# template; then each language's load client against one calcd,
#      briefly, over both transports (scripts/bench-langs.sh --smoke), and
#      scripts/bench-tls.sh and scripts/bench-observability.sh, briefly;
#   7. the web page: its committed script is what server/webui/build.sh
#      builds, and the page itself in headless Chromium (scripts/browser-test.sh).
# Set FUZZTIME (default 10s) to fuzz longer.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

step "tools (pinned buf and protoc plugins)"
source scripts/tools.sh

step "schema: buf format, lint, breaking"
buf format -d --exit-code
buf lint
if git rev-parse -q --verify HEAD~1 >/dev/null; then
  buf breaking --against '.git#ref=HEAD~1'
else
  echo "no previous commit: nothing to compare the schema against" >&2
fi

step "generated code is current"
buf generate
buf build --as-file-descriptor-set -o internal/schema/calculator.binpb
if ! git diff --exit-code --stat -- gen/ internal/schema/ || [ -n "$(git status --porcelain -- gen/ internal/schema/)" ]; then
  echo "gen/ or internal/schema/calculator.binpb differs from what scripts/generate.sh produces: run it and commit" >&2
  exit 1
fi

step "gofmt and go vet (linux, windows, darwin)"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^gen/'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed: $unformatted" >&2
  exit 1
fi
go vet ./...
GOOS=windows go vet ./...
GOOS=darwin go vet ./...

step "go test -race"
go test -race -count=1 ./...

step "allocation and idle-memory budgets (without the race detector, which allocates itself)"
go test -count=1 -run 'Allocs|IdleConnHeap' ./...

step "fuzz.sh fails on a crasher and retries only a fuzzing-engine error"
bash scripts/fuzz_selftest.sh

step "fuzzing each parser and the connection state machine for ${FUZZTIME:-10s} each"
# fuzz.sh retries once when Go's fuzz coordinator fails without a crasher
# (go.dev/issue/75804); a crasher fails at once and is kept to be committed.
bash scripts/fuzz.sh ./internal/wire FuzzReadFrame
bash scripts/fuzz.sh ./internal/expr FuzzEvaluate
bash scripts/fuzz.sh ./internal/arith FuzzCalculate
bash scripts/fuzz.sh ./server/tcpserver FuzzConnection
bash scripts/fuzz.sh ./internal/calccodec FuzzCodec

step "benchmarks, one pass each"
go test -run '^$' -bench . -benchtime 1x ./...

step "HTTP port: buf curl over Connect, gRPC-Web and gRPC; README.md's curl lines"
bash scripts/http.sh

step "Wireshark dissector: golden output, malformed input, a live loopback capture"
bash tools/wireshark/test.sh

step "deploy: the Dockerfile, the systemd unit, Prometheus rules and the Grafana dashboard against a real scrape, Kubernetes manifests"
bash deploy/test.sh

step "deploy: scale-out: three calcd, a drain, a crash and restarts behind client-side balancing, HAProxy and nginx"
bash scripts/scaleout.sh --short

step "C# generation template"
bash client/csharp/generate.sh

step "interop: every language's client against calcd"
bash scripts/interop.sh

step "bench-langs smoke: every language's load client against one calcd, raw TCP and gRPC, c=1 and c=8 (no timing checked)"
# Reuses the builds interop just made; fails if a client errs or makes no call.
bash scripts/bench-langs.sh --smoke

step "bench-tls.sh and bench-observability.sh smoke: one short run each, rendered by benchreport --cost (no timing checked)"
smoke=$(mktemp -d)
BENCH_DURATION=1 BENCH_RUNS=1 BENCH_TLS_OUT=$smoke/tls.jsonl bash scripts/bench-tls.sh >/dev/null
BENCH_DURATION=1 BENCH_RUNS=1 BENCH_PIN=free BENCH_OBS_OUT=$smoke/closed.jsonl bash scripts/bench-observability.sh >/dev/null
BENCH_DURATION=1 BENCH_RUNS=1 BENCH_PIN=free BENCH_RATE=20000 BENCH_OBS_OUT=$smoke/rate.jsonl bash scripts/bench-observability.sh >/dev/null
for f in tls closed rate; do go run ./bench/cmd/benchreport --cost "$smoke/$f.jsonl" >/dev/null; done
rm -rf "$smoke"

step "web page: the committed bundle is what server/webui/build.sh builds"
bash server/webui/build.sh --check

step "web page in headless Chromium (tools/browsertest; installs chromium from Debian when missing)"
bash scripts/browser-test.sh
