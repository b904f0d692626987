//go:build !race

// The race detector adds allocations of its own: scripts/test.sh runs this
// file in a build without it.

package tcpserver_test

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/interceptor"
	"github.com/calcrpc/calc/server/tcpserver"
)

// allocBudget is the most heap allocations the server may make per unary
// Calculate call, run inline as calcd runs it, with calcd's interceptors.
// Four are the generated handler's and the service's own (the request, the
// response, the UnaryServerInfo, the handler closure); the fifth is the call,
// which is also its context.
const allocBudget = 5

// TestAllocsPerCall measures the allocations of one Calculate round trip
// through a real server on loopback. The client side writes a prebuilt frame
// and reads the answer into a fixed buffer, allocating nothing, so what is
// counted is the server's per-call path.
func TestAllocsPerCall(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := tcpserver.New(tcpserver.Options{
		Logger:             logger,
		UnaryInterceptors:  interceptor.Unary(logger, 0),
		StreamInterceptors: interceptor.Stream(logger, 0),
		InlineMethods:      calculator.CheapMethods,
	})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Shutdown(t.Context())

	nc, rd := dial(t, lis.Addr().String(), true)
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	if _, err := nc.Write(request(1, calculate, 0, msg)); err != nil { // binds ref 1
		t.Fatal(err)
	}
	if _, err := rd.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	frame := wire.AppendFrame(nil, wire.KindRequest, 0, 0, append([]byte{1}, msg...))
	answer := make([]byte, 12) // RESPONSE: 10-byte frame header + 08 05
	id := uint32(1)
	call := func() {
		id++
		frame[6], frame[7], frame[8], frame[9] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(nc, answer); err != nil || answer[4] != byte(wire.KindResponse) {
			t.Fatalf("answer %x: %v", answer, err)
		}
	}
	for range 100 { // warm the pools
		call()
	}
	_ = nc.SetDeadline(time.Time{})
	allocs := testing.AllocsPerRun(2000, call)
	t.Logf("%.2f allocations per call", allocs)
	if allocs > allocBudget {
		t.Fatalf("%.2f allocations per call, budget %d", allocs, allocBudget)
	}
}
