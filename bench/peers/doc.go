// Package peers holds nothing but this note: its subpackages serve and call
// calc's one CalculatorService implementation (server/calculator) over the
// RPC systems calc's benchmarks compare it with, besides grpc-go:
// storj.io/drpc over plain TCP (drpcpeer) and connectrpc.com/connect over
// HTTP/2 without TLS (connectpeer). Their handlers are written by hand over
// the generated calculatorv1 messages, in the shape each system's own code
// generator gives, so that gen/ stays the output of buf generate alone.
// bench/cmd/calc-peer runs them as servers and drives them with calc-bench's
// load engine (package bench).
package peers
