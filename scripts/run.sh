#!/usr/bin/env bash
# run.sh builds calcd, calc and calc-bench into bin/ and runs calcd with its
# defaults, gRPC on 127.0.0.1:50051 and raw TCP on 127.0.0.1:4000, and the
# HTTP port (Connect, gRPC-Web, REST), off in calcd by default, on
# 127.0.0.1:8080 (CALCD_HTTP_ADDR to move it). Arguments are passed to calcd
# after those (calcd -h). It says on stderr what it is doing.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
echo "run.sh: building calcd, calc and calc-bench into bin/ (the first build downloads modules and takes about a minute)" >&2
echo "run.sh: building bin/calcd" >&2
go build -o bin/calcd ./server/cmd/calcd
echo "run.sh: building bin/calc" >&2
go build -o bin/calc ./client/cmd/calc
echo "run.sh: building bin/calc-bench" >&2
go build -o bin/calc-bench ./bench/cmd/calc-bench
tcp=${CALCD_TCP_ADDR:-127.0.0.1:4000}
grpc=${CALCD_GRPC_ADDR:-127.0.0.1:50051}
http=${CALCD_HTTP_ADDR:-127.0.0.1:8080}
if [[ $# -gt 0 ]]; then
	echo "run.sh: starting calcd $* (raw TCP on $tcp, gRPC on $grpc, HTTP on $http, unless those arguments say otherwise; Ctrl-C stops it)" >&2
else
	echo "run.sh: starting calcd: raw TCP on $tcp (calc 2 + 3), gRPC on $grpc (calc --transport grpc 2 + 3), HTTP on $http (curl 'http://$http/v1/calculate?operator=OPERATOR_ADD&lhs=2&rhs=3'); Ctrl-C stops it" >&2
fi
exec bin/calcd --http-addr "$http" "$@"
