#!/usr/bin/env bash
# run.sh builds calcd and runs it with its defaults: gRPC on 127.0.0.1:50051,
# raw TCP on 127.0.0.1:4000. Arguments are passed to calcd (calcd -h).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
go build -o bin/calcd ./server/cmd/calcd
go build -o bin/calc ./client/cmd/calc
go build -o bin/calc-bench ./bench/cmd/calc-bench
exec bin/calcd "$@"
