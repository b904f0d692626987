package tcpserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/tcpserver"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// panicky panics in every handler.
type panicky struct {
	calculatorv1.UnimplementedCalculatorServiceServer
}

func (panicky) Calculate(context.Context, *calculatorv1.CalculateRequest) (*calculatorv1.CalculateResponse, error) {
	panic("boom")
}

func (panicky) Evaluate(context.Context, *calculatorv1.EvaluateRequest) (*calculatorv1.EvaluateResponse, error) {
	panic("boom")
}

func (panicky) CalculateStream(calculatorv1.CalculatorService_CalculateStreamServer) error {
	panic("boom")
}

// TestHandlerPanicWithoutInterceptors: with no recovery interceptor, a
// panicking handler, inline (Calculate), in its own goroutine (Evaluate)
// or streaming, answers INTERNAL, is logged with its stack once, and the
// connection and the server go on serving; Shutdown completes.
// It runs under every dispatch model.
func TestHandlerPanicWithoutInterceptors(t *testing.T) {
	forEachDispatch(t, testHandlerPanicWithoutInterceptors)
}

func testHandlerPanicWithoutInterceptors(t *testing.T, d tcpserver.Options) {
	logs := &syncBuffer{}
	opts := d
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	opts.InlineMethods = []string{calculate}
	srv := startService(t, opts, panicky{})
	nc, rd := dial(t, srv.TCPAddr, true)
	calcMsg, _ := proto.Marshal(&calculatorv1.CalculateRequest{})
	evalMsg, _ := proto.Marshal(&calculatorv1.EvaluateRequest{Expression: "1"})
	var frames []byte
	frames = append(frames, requestRef(1, 1, calculate, 0, calcMsg)...)
	frames = append(frames, requestRef(2, 2, "/calculator.v1.CalculatorService/Evaluate", 0, evalMsg)...)
	frames = append(frames, requestRef(3, 3, "/calculator.v1.CalculatorService/CalculateStream", 0, nil)...)
	frames = append(frames, requestRef(4, 1, calculate, 0, calcMsg)...)
	if _, err := nc.Write(frames); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]codes.Code{}
	for range 4 {
		f, err := rd.ReadFrame()
		if err != nil || f.Kind != wire.KindStatus {
			t.Fatalf("got %v %v, want STATUS", f.Kind, err)
		}
		st, _ := wire.ParseStatus(f.Payload)
		got[f.ID] = codes.Code(st.GetCode())
	}
	for id := uint32(1); id <= 4; id++ {
		if got[id] != codes.Internal {
			t.Errorf("call %d: %v, want INTERNAL", id, got[id])
		}
	}
	if n := strings.Count(logs.String(), "panic in handler"); n != 4 {
		t.Errorf("%d panic records for 4 panics:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("panic records carry no stack:\n%s", logs)
	}
}

// TestStreamLimitOverflowIsReaped: a client opens more streams than the
// per-connection limit, then closes its socket. The stream past the limit
// is refused with RESOURCE_EXHAUSTED, the connection is reaped, and the
// goroutines its streams held are gone.
func TestStreamLimitOverflowIsReaped(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxConcurrentStreams: 50})
	base := runtime.NumGoroutine()
	nc, rd := dial(t, srv.TCPAddr, true)
	var frames []byte
	for id := uint32(1); id <= 51; id++ {
		frames = append(frames, request(id, "/calculator.v1.CalculatorService/CalculateStream", 0, nil)...)
	}
	if _, err := nc.Write(frames); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, rd, []answer{{wire.KindStatus, 51, codes.ResourceExhausted}}, false)
	if n := srv.TCP.Stats().CallsRefused["streams_per_conn"]; n != 1 {
		t.Errorf("refused streams counted: %d, want 1", n)
	}
	if n := runtime.NumGoroutine(); n < base+50 {
		t.Fatalf("%d goroutines with 50 streams open, want at least %d", n, base+50)
	}
	nc.Close()
	waitGoroutines(t, base+1, "after the client left")
	stillServes(t, srv)
}

// TestServerWideStreamBudget: streams past MaxStreams are refused on any
// connection, and those already open go on.
func TestServerWideStreamBudget(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxStreams: 3})
	stream := "/calculator.v1.CalculatorService/CalculateStream"
	nc1, rd1 := dial(t, srv.TCPAddr, true)
	nc2, rd2 := dial(t, srv.TCPAddr, true)
	// Three streams on the first connection; the PING's answer shows they
	// were all dispatched.
	opened := append(append(request(1, stream, 0, nil), request(2, stream, 0, nil)...), request(3, stream, 0, nil)...)
	_, _ = nc1.Write(append(opened, wire.AppendFrame(nil, wire.KindPing, 0, 0, nil)...))
	expectFrames(t, rd1, []answer{{wire.KindPong, 0, codes.OK}}, false)
	_, _ = nc2.Write(request(1, stream, 0, nil))
	expectFrames(t, rd2, []answer{{wire.KindStatus, 1, codes.ResourceExhausted}}, false)
	if n := srv.TCP.Stats().CallsRefused["max_streams"]; n != 1 {
		t.Errorf("refused streams counted: %d, want 1", n)
	}
	// An open stream still calculates.
	msg, _ := proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: 7, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 3, Rhs: 4}})
	if _, err := nc1.Write(wire.AppendFrame(nil, wire.KindMessage, 0, 1, msg)); err != nil {
		t.Fatal(err)
	}
	if f, err := rd1.ReadFrame(); err != nil || f.Kind != wire.KindMessage || f.ID != 1 {
		t.Fatalf("stream message: %v %v %v", f.Kind, f.ID, err)
	}
	// When a stream ends, its place is free again.
	_, _ = nc1.Write(wire.AppendFrame(nil, wire.KindHalfClose, 0, 2, nil))
	expectFrames(t, rd1, []answer{{wire.KindStatus, 2, codes.OK}}, false)
	msg, _ = proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: 8, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}})
	_, _ = nc2.Write(append(request(2, stream, 0, nil), wire.AppendFrame(nil, wire.KindMessage, 0, 2, msg)...))
	if f, err := rd2.ReadFrame(); err != nil || f.Kind != wire.KindMessage || f.ID != 2 {
		t.Fatalf("a stream after one ended: %v %v %v", f.Kind, f.ID, err)
	}
}

// TestSnappyBombWithinLimit: a 23-byte block claiming 4 MiB (within the
// message limit) is refused with RESOURCE_EXHAUSTED before decoding, and
// the connection goes on.
func TestSnappyBombWithinLimit(t *testing.T) {
	srv := start(t, tcpserver.Options{})
	nc, rd := dial(t, srv.TCPAddr, true)
	bomb := append([]byte{0x80, 0x80, 0x80, 0x02}, make([]byte, 19)...)
	if _, err := nc.Write(request(1, calculate, wire.FlagCompressed, bomb)); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, rd, []answer{{wire.KindStatus, 1, codes.ResourceExhausted}}, false)
	stillServes(t, srv)
}

// TestLargeFrameBudget: connections trickling large frames hold at most
// MaxPendingFrameBytes together; one that needs more is sent GOAWAY
// RESOURCE_EXHAUSTED and closed, while small calls on other connections go
// on.
func TestLargeFrameBudget(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxPendingFrameBytes: 256 << 10})
	const partial = 100 << 10 // of a 1 MiB frame
	var refused int
	for i := range 6 {
		nc, rd := dial(t, srv.TCPAddr, true)
		frame := request(1, calculate, 0, make([]byte, 1<<20))
		if _, err := nc.Write(frame[:partial]); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		f, err := rd.ReadFrame()
		switch {
		case err == nil && f.Kind == wire.KindGoAway:
			_, st, _ := wire.ParseGoAway(f.Payload)
			if codes.Code(st.GetCode()) != codes.ResourceExhausted {
				t.Fatalf("connection %d: GOAWAY %v", i, st)
			}
			refused++
		case errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "timeout"):
		default:
			t.Fatalf("connection %d: %v %v", i, f.Kind, err)
		}
		stillServes(t, srv)
	}
	// 256 KiB hold two connections' 100 KiB (taken in growing buffers):
	// the others are refused.
	if refused < 3 {
		t.Fatalf("%d of 6 connections refused, want the budget to refuse most", refused)
	}
	if n := srv.TCP.Stats().FrameBudgetExhausted; n != uint64(refused) {
		t.Errorf("frame budget exhaustions counted: %d, want %d", n, refused)
	}
}

// TestSilentSocketsCannotLockOthersOut: sockets that connect and never
// send a preface do not count against MaxConnections, and past
// MaxHandshakes the oldest is dropped, so a real client still gets in.
func TestSilentSocketsCannotLockOthersOut(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxConnections: 5, MaxHandshakes: 20})
	var silent []net.Conn
	for range 30 { // more than MaxHandshakes and than MaxConnections
		nc, err := net.Dial("tcp", srv.TCPAddr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, nc)
		t.Cleanup(func() { nc.Close() })
	}
	for i := range 3 {
		if _, err := tryCall(srv.TCPAddr); err != nil {
			t.Fatalf("call %d past 30 silent sockets: %v", i, err)
		}
	}
	// The oldest were dropped to make room.
	_ = silent[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); !errors.Is(err, io.EOF) && (err == nil || !isReset(err)) {
		t.Fatalf("the oldest silent socket: %v, want closed", err)
	}
}

// TestConnectionsPerAddress: one address holds at most
// MaxConnectionsPerAddr connections; the next is refused with a reason,
// and a place frees when one closes.
func TestConnectionsPerAddress(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxConnectionsPerAddr: 10})
	var held []net.Conn
	for range 10 {
		nc, _ := dial(t, srv.TCPAddr, true)
		held = append(held, nc)
	}
	nc, rd := dial(t, srv.TCPAddr, false)
	_, _ = nc.Write(wire.AppendPreface(nil))
	f, err := rd.ReadFrame()
	if err != nil || f.Kind != wire.KindGoAway {
		t.Fatalf("past the per-address cap: %v %v, want GOAWAY", f.Kind, err)
	}
	if _, st, _ := wire.ParseGoAway(f.Payload); codes.Code(st.GetCode()) != codes.ResourceExhausted || !strings.Contains(st.GetMessage(), "address") {
		t.Fatalf("refusal %v", st)
	}
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for { // the server notices the close asynchronously
		if _, err := tryCall(srv.TCPAddr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no place freed after a connection closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGoroutines waits (at most 10 s) until the process runs at most n
// goroutines, and fails the test with the count otherwise.
func waitGoroutines(t *testing.T, n int, why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines, want at most %d", why, runtime.NumGoroutine(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRefusedStreamsGiveTheirPlaceBack: streams refused after they were
// counted (a streaming REQUEST that carries a message, or one whose
// deadline budget is 0) give their place back, so that a client cannot
// spend the server's stream budget with them.
func TestRefusedStreamsGiveTheirPlaceBack(t *testing.T) {
	srv := start(t, tcpserver.Options{MaxStreams: 2, MaxConcurrentStreams: 2})
	stream := "/calculator.v1.CalculatorService/CalculateStream"
	nc, rd := dial(t, srv.TCPAddr, true)
	zeroDeadline := func(id uint32) []byte {
		p, flags := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 1, MethodName: stream, HasTimeout: true})
		return wire.AppendFrame(nil, wire.KindRequest, flags, id, p)
	}
	var frames []byte
	var want []answer
	for id := uint32(1); id <= 6; id += 2 {
		frames = append(frames, request(id, stream, 0, []byte{8, 1})...)
		frames = append(frames, zeroDeadline(id+1)...)
		want = append(want, answer{wire.KindStatus, id, codes.InvalidArgument}, answer{wire.KindStatus, id + 1, codes.DeadlineExceeded})
	}
	if _, err := nc.Write(frames); err != nil {
		t.Fatal(err)
	}
	expectFrames(t, rd, want, false)
	msg, _ := proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: 1, Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1}})
	for id := uint32(7); id <= 8; id++ { // both places are free
		if _, err := nc.Write(append(request(id, stream, 0, nil), wire.AppendFrame(nil, wire.KindMessage, 0, id, msg)...)); err != nil {
			t.Fatal(err)
		}
		if f, err := rd.ReadFrame(); err != nil || f.Kind != wire.KindMessage || f.ID != id {
			t.Fatalf("stream %d after the refused ones: %v %v %v", id, f.Kind, f.ID, err)
		}
	}
}
