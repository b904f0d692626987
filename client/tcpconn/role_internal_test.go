package tcpconn

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
)

// roleServer is a scripted raw TCP server for one connection: it answers
// the handshake, then hands each frame the client sends to the test
// through frames, and writes what the test sends to out.
type roleServer struct {
	frames chan wire.Frame // the client's frames, payloads copied
	out    chan []byte     // bytes to write; closing it closes the connection
}

// startRoleServer starts a roleServer and connects to it with a Conn whose
// reader takes a free role back after retake.
func startRoleServer(t *testing.T, retake time.Duration) (*roleServer, *Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &roleServer{frames: make(chan wire.Frame, 64), out: make(chan []byte, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nc, err := lis.Accept()
		lis.Close()
		if err != nil {
			return
		}
		defer nc.Close()
		var p [wire.PrefaceSize]byte
		if _, err := nc.Read(p[:]); err != nil {
			return
		}
		_, _ = nc.Write(wire.AppendSettingsFrame(nil, wire.Settings{}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(s.frames)
			rd := wire.NewReader(nc, 0)
			for {
				f, err := rd.ReadFrame()
				if err != nil {
					return
				}
				f.Payload = append([]byte(nil), f.Payload...)
				s.frames <- f
			}
		}()
		for b := range s.out {
			if _, err := nc.Write(b); err != nil {
				return
			}
		}
	}()
	old := readerRetake
	readerRetake = retake
	c, err := Dial(context.Background(), lis.Addr().String(), Options{KeepaliveInterval: -1})
	readerRetake = old
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		select {
		case <-s.out:
		default:
			close(s.out)
		}
		wg.Wait()
	})
	return s, c
}

// next returns the client's next frame of kind, skipping others.
func (s *roleServer) next(t *testing.T, kind wire.Kind) wire.Frame {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatalf("connection closed while waiting for %s", kind)
			}
			if f.Kind == kind {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s frame within 10 s", kind)
		}
	}
}

// warm makes one call on c and answers it, after which the reader gives
// the reading role up: the next caller alone on c reads its own answer.
func (s *roleServer) warm(t *testing.T, c *Conn) {
	t.Helper()
	done := call(context.Background(), c)
	s.out <- answer(s.next(t, wire.KindRequest).ID, 1, 0)
	if r := wait(t, done); r.err != nil {
		t.Fatalf("warm-up call: %v", r.err)
	}
	waitRole(t, c, roleFree)
}

// answer is a RESPONSE frame for call id carrying result, plus pad bytes
// in an unknown field (kept by proto.Unmarshal) to make it large.
func answer(id uint32, result int64, pad int) []byte {
	msg, _ := proto.Marshal(&calculatorv1.CalculateResponse{Result: result})
	if pad > 0 {
		msg = protowire.AppendTag(msg, 1000, protowire.BytesType)
		msg = protowire.AppendBytes(msg, make([]byte, pad))
	}
	return wire.AppendMessageFrame(nil, wire.KindResponse, id, msg, 0)
}

// roleOf returns who reads c, and the call whose caller does.
func roleOf(c *Conn) (uint8, uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.role, c.reading
}

// waitRole waits until c's role is want.
func waitRole(t *testing.T, c *Conn, want uint8) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if r, _ := roleOf(c); r == want {
			return
		}
		if time.Now().After(deadline) {
			r, _ := roleOf(c)
			t.Fatalf("role %d, want %d", r, want)
		}
	}
}

type callResult struct {
	resp *calculatorv1.CalculateResponse
	err  error
}

// call starts a Calculate on c and returns where its result arrives.
func call(ctx context.Context, c *Conn) <-chan callResult {
	done := make(chan callResult, 1)
	go func() {
		resp := new(calculatorv1.CalculateResponse)
		err := c.Invoke(ctx, calculatorv1.CalculatorService_Calculate_FullMethodName,
			&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}, resp)
		done <- callResult{resp, err}
	}()
	return done
}

func wait(t *testing.T, done <-chan callResult) callResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("call not answered within 10 s")
		return callResult{}
	}
}

// TestCallerReadsAlone checks the reading role through a caller's life:
// the reader gives it up after the first answer, and a caller alone on the
// connection takes it and reads its answer, small or larger than the read
// buffer (which it leaves to the reader).
func TestCallerReadsAlone(t *testing.T) {
	s, c := startRoleServer(t, time.Hour)
	first := call(context.Background(), c)
	f := s.next(t, wire.KindRequest)
	if r, _ := roleOf(c); r != roleReader {
		t.Fatalf("first call: role %d, want the reader's (it holds it from the start)", r)
	}
	s.out <- answer(f.ID, 5, 0)
	if r := wait(t, first); r.err != nil || r.resp.GetResult() != 5 {
		t.Fatalf("first call: %v, %v", r.resp, r.err)
	}
	waitRole(t, c, roleFree) // on its way back the reader may not have let go yet

	for _, pad := range []int{0, 3 * wire.ReadBufferSize} {
		done := call(context.Background(), c)
		f = s.next(t, wire.KindRequest)
		waitRole(t, c, roleCaller)
		if r, id := roleOf(c); r != roleCaller || id != f.ID {
			t.Fatalf("call %d: role %d reading %d, want the caller's", f.ID, r, id)
		}
		s.out <- answer(f.ID, 7, pad)
		if r := wait(t, done); r.err != nil || r.resp.GetResult() != 7 {
			t.Fatalf("call %d (%d bytes of padding): %v, %v", f.ID, pad, r.resp, r.err)
		}
		waitRole(t, c, roleFree)
	}
}

// TestReaderRetakes checks that the reader takes a free role back once
// the connection is quiet, and so notices the server's end with no call.
func TestReaderRetakes(t *testing.T) {
	s, c := startRoleServer(t, 20*time.Millisecond)
	done := call(context.Background(), c)
	s.out <- answer(s.next(t, wire.KindRequest).ID, 5, 0)
	if r := wait(t, done); r.err != nil {
		t.Fatal(r.err)
	}
	waitRole(t, c, roleReader)
	close(s.out)
	select {
	case <-c.readerOut:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's end was not noticed on a quiet connection")
	}
}

// TestCallerReadsOthersAnswers checks that the caller reading its own
// answer completes the answers of calls that joined it, in any order, and
// hands the role to the reader when it leaves them pending.
func TestCallerReadsOthersAnswers(t *testing.T) {
	s, c := startRoleServer(t, time.Hour)
	s.warm(t, c)

	a := call(context.Background(), c)
	fa := s.next(t, wire.KindRequest)
	b := call(context.Background(), c)
	fb := s.next(t, wire.KindRequest)
	cc := call(context.Background(), c)
	fc := s.next(t, wire.KindRequest)
	waitRole(t, c, roleCaller)
	if r, id := roleOf(c); r != roleCaller || id != fa.ID {
		t.Fatalf("role %d reading %d, want call %d's caller", r, id, fa.ID)
	}
	s.out <- answer(fb.ID, 2, 0)
	if r := wait(t, b); r.err != nil || r.resp.GetResult() != 2 {
		t.Fatalf("second call: %v, %v", r.resp, r.err)
	}
	s.out <- answer(fa.ID, 1, 0)
	if r := wait(t, a); r.err != nil || r.resp.GetResult() != 1 {
		t.Fatalf("first call: %v, %v", r.resp, r.err)
	}
	waitRole(t, c, roleReader) // the third call is still pending
	s.out <- answer(fc.ID, 3, 0)
	if r := wait(t, cc); r.err != nil || r.resp.GetResult() != 3 {
		t.Fatalf("third call: %v, %v", r.resp, r.err)
	}
}

// TestCallerReadEndsWithContext checks that a caller reading its own
// answer returns when its context ends, sends CANCEL, and leaves the
// connection working: a cancelled and a timed-out call, then a good one.
func TestCallerReadEndsWithContext(t *testing.T) {
	s, c := startRoleServer(t, time.Hour)
	s.warm(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	done := call(ctx, c)
	f := s.next(t, wire.KindRequest)
	waitRole(t, c, roleCaller)
	if r, _ := roleOf(c); r != roleCaller {
		t.Fatalf("role %d, want the caller's", r)
	}
	cancel()
	if r := wait(t, done); status.Code(r.err) != codes.Canceled {
		t.Fatalf("cancelled call: %v; want CANCELLED", r.err)
	}
	if got := s.next(t, wire.KindCancel); got.ID != f.ID {
		t.Fatalf("CANCEL for call %d, want %d", got.ID, f.ID)
	}
	// The reader has the role (the cancelled call was pending as the caller
	// left) and gives it up after the next frame.
	s.out <- answer(f.ID, 9, 0) // a late answer to the abandoned call
	waitRole(t, c, roleFree)

	ctx, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	done = call(ctx, c)
	f = s.next(t, wire.KindRequest)
	if r := wait(t, done); status.Code(r.err) != codes.DeadlineExceeded {
		t.Fatalf("timed-out call: %v; want DEADLINE_EXCEEDED", r.err)
	}
	s.next(t, wire.KindCancel)
	s.out <- answer(f.ID, 9, 0)
	waitRole(t, c, roleFree)

	done = call(context.Background(), c)
	f = s.next(t, wire.KindRequest)
	s.out <- answer(f.ID, 5, 0)
	if r := wait(t, done); r.err != nil || r.resp.GetResult() != 5 {
		t.Fatalf("call after the interrupted reads: %v, %v", r.resp, r.err)
	}
}

// TestCallerReadLost checks that a caller reading its own answer when the
// server goes away gets UNAVAILABLE, and the connection ends.
func TestCallerReadLost(t *testing.T) {
	s, c := startRoleServer(t, time.Hour)
	s.warm(t, c)

	done := call(context.Background(), c)
	s.next(t, wire.KindRequest)
	close(s.out)
	r := wait(t, done)
	if status.Code(r.err) != codes.Unavailable {
		t.Fatalf("call on a lost connection: %v; want UNAVAILABLE", r.err)
	}
	select {
	case <-c.readerOut:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not end with the connection")
	}
	if err := c.Invoke(context.Background(), calculatorv1.CalculatorService_Calculate_FullMethodName,
		&calculatorv1.CalculateRequest{}, new(calculatorv1.CalculateResponse)); !errors.Is(err, ErrNotProcessed) {
		t.Fatalf("call after the end: %v; want not processed", err)
	}
}

// TestStreamWakesReader checks that a stream opened while nobody reads
// (the reader gave the role up after the last answer) wakes the reader:
// its messages arrive though the reader would not take the role back on
// its own for an hour.
func TestStreamWakesReader(t *testing.T) {
	s, c := startRoleServer(t, time.Hour)
	s.warm(t, c)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
		calculatorv1.CalculatorService_CalculateStream_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&calculatorv1.CalculateStreamRequest{Id: 1}); err != nil {
		t.Fatal(err)
	}
	f := s.next(t, wire.KindRequest)
	msg, _ := proto.Marshal(&calculatorv1.CalculateStreamResponse{Id: 1})
	s.out <- wire.AppendMessageFrame(nil, wire.KindMessage, f.ID, msg, 0)
	got := make(chan error, 1)
	go func() { got <- st.RecvMsg(new(calculatorv1.CalculateStreamResponse)) }()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream's message was not read")
	}
}
