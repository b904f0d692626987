package tcpserver_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// TestMaxConnectionAge: past MaxConnectionAge the server sends GOAWAY
// (code OK) with the last accepted id; a stream still open then ends with
// UNAVAILABLE once the grace has passed, and the connection closes. A
// connection with nothing in flight closes right after its GOAWAY.
func TestMaxConnectionAge(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxConnectionAge: 100 * time.Millisecond, MaxConnectionAgeGrace: 200 * time.Millisecond})

	busy, rd := dial(t, srv.TCPAddr, true)
	if _, err := busy.Write(request(1, "/calculator.v1.CalculatorService/CalculateStream", 0, nil)); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, rd, []answer{
		{wire.KindGoAway, 0, codes.OK},
		{wire.KindStatus, 1, codes.Unavailable},
	}, true)

	_, rd = dial(t, srv.TCPAddr, true)
	expectFrames(t, rd, []answer{{wire.KindGoAway, 0, codes.OK}}, true)
	stillServes(t, srv)
}
