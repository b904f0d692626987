package tcpserver_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// burst writes n Calculate(ADD, id, 1) requests, ids first to first+n-1,
// in one write, and checks their n answers.
func burst(t *testing.T, ts *testServer, nc interface{ Write([]byte) (int, error) }, rd *wire.Reader, first uint32, n int) {
	t.Helper()
	var b []byte
	for id := first; id < first+uint32(n); id++ {
		msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(id), Rhs: 1})
		b = append(b, request(id, calculate, 0, msg)...)
	}
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	for id := first; id < first+uint32(n); id++ {
		f, err := rd.ReadFrame()
		if err != nil || f.Kind != wire.KindResponse || f.ID != id {
			t.Fatalf("call %d: %v %v %v", id, f.Kind, f.ID, err)
		}
		var resp calculatorv1.CalculateResponse
		if err := proto.Unmarshal(f.Payload, &resp); err != nil || resp.GetResult() != int64(id)+1 {
			t.Fatalf("call %d: %v %v", id, &resp, err)
		}
	}
}

// TestBusyPoll runs bursts of several calls, the kind after which a
// connection polls for the next (Options.BusyPoll), with the next burst
// sent at once (a poll that finds it) or after a pause (a poll that ends
// empty, and the skips after it), with polling on by default, off, and
// long: every call is answered once, whatever the poll finds.
func TestBusyPoll(t *testing.T) {
	for _, tc := range []struct {
		name string
		poll time.Duration
	}{
		{"default", 0},
		{"off", -1},
		{"longer than the maximum", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, tcpserver.Options{BusyPoll: tc.poll})
			nc, rd := dial(t, ts.TCPAddr, true)
			defer nc.Close()
			id := uint32(1)
			for round := range 40 {
				burst(t, ts, nc, rd, id, 8)
				id += 8
				if round%4 == 3 {
					time.Sleep(2 * time.Millisecond) // longer than a default poll
				}
			}
		})
	}
}

// TestBusyPollPeerCloses: a client that closes while its connection polls
// (for the longest poll, busypoll.Max) is seen gone.
func TestBusyPollPeerCloses(t *testing.T) {
	ts := start(t, tcpserver.Options{BusyPoll: time.Hour})
	nc, rd := dial(t, ts.TCPAddr, true)
	burst(t, ts, nc, rd, 1, 4) // the connection now polls, for up to busypoll.Max
	nc.Close()
	waitFor(t, func() bool { return ts.TCP.Stats().ConnectionsOpen == 0 })
}
