package tcpconn

// Tests of the reading role against connections and servers that behave
// badly: each failed on the role's first version (fa72654, fc4ef10).

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
)

// scripted serves one connection accepted on lis: the handshake, then
// serve(nc, rd). The client Conn is made with NewConn on the net.Conn
// dial returns.
func scripted(t *testing.T, lis net.Listener, dial func() (net.Conn, error), opts Options, serve func(nc net.Conn, rd *wire.Reader)) *Conn {
	t.Helper()
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
		serve(nc, wire.NewReader(nc, 64<<20))
	}()
	nc, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	old := readerRetake
	readerRetake = time.Hour // only the wake-ups under test move the role
	if scriptedRetake != 0 {
		readerRetake = scriptedRetake
	}
	c, err := NewConn(context.Background(), nc, opts)
	readerRetake = old
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return c
}

func invokeAsync(ctx context.Context, c *Conn, req *calculatorv1.CalculateRequest) <-chan callResult {
	done := make(chan callResult, 1)
	go func() {
		resp := new(calculatorv1.CalculateResponse)
		err := c.Invoke(ctx, calculatorv1.CalculatorService_Calculate_FullMethodName, req, resp)
		done <- callResult{resp, err}
	}()
	return done
}

var small = &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}

// echoOnce answers the next REQUEST with result, skipping other frames.
func echoOnce(nc net.Conn, rd *wire.Reader, result int64) (uint32, bool) {
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return 0, false
		}
		if f.Kind == wire.KindRequest {
			_, err := nc.Write(answer(f.ID, result, 0))
			return f.ID, err == nil
		}
	}
}

// TestCallerReadOtherTimeout checks a net.Conn whose read timeout is not
// os.ErrDeadlineExceeded (grpc's bufconn: "i/o timeout" with Timeout()
// true): a cancelled caller reading its own answer must take it for the
// interrupt it is (Fill leaves the Reader as it was), not fail the
// connection, so the other call in flight and later calls succeed.
func TestCallerReadOtherTimeout(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	reqs := make(chan uint32, 8)
	answers := make(chan []byte, 8)
	c := scripted(t, lis, func() (net.Conn, error) { return lis.Dial() }, Options{KeepaliveInterval: -1},
		func(nc net.Conn, rd *wire.Reader) {
			go func() {
				for b := range answers {
					if _, err := nc.Write(b); err != nil {
						return
					}
				}
			}()
			for {
				f, err := rd.ReadFrame()
				if err != nil {
					close(reqs)
					return
				}
				if f.Kind == wire.KindRequest {
					reqs <- f.ID
				}
			}
		})
	defer close(answers)
	// Warm up: the reader gives the role up after the first answer.
	d := invokeAsync(context.Background(), c, small)
	answers <- answer(<-reqs, 5, 0)
	if r := wait(t, d); r.err != nil {
		t.Fatal(r.err)
	}
	waitRole(t, c, roleFree)

	ctx, cancel := context.WithCancel(context.Background())
	a := invokeAsync(ctx, c, small) // alone: reads its own answer
	<-reqs
	waitRole(t, c, roleCaller)
	if r, _ := roleOf(c); r != roleCaller {
		t.Fatalf("role %d, want the caller's", r)
	}
	b := invokeAsync(context.Background(), c, small) // joins it
	idB := <-reqs
	cancel()
	ra := wait(t, a)
	t.Logf("cancelled call: %v", ra.err)
	answers <- answer(idB, 7, 0)
	rb := wait(t, b)
	if rb.err != nil {
		t.Errorf("the other call in flight failed: %v (want 7)", rb.err)
	}
	c.mu.Lock()
	cerr := c.err
	c.mu.Unlock()
	if cerr != nil {
		t.Errorf("connection failed by a cancelled call: %v", cerr)
	}
}

// noDeadlineConn is a net.Conn without deadlines, as an x/crypto/ssh
// channel is.
type noDeadlineConn struct{ net.Conn }

func (noDeadlineConn) SetDeadline(time.Time) error     { return errors.New("deadline not supported") }
func (noDeadlineConn) SetReadDeadline(time.Time) error { return errors.New("deadline not supported") }

// TestCallerReadsOnlyWithDeadlines checks a connection without read
// deadlines: a caller there could not be interrupted, so callers never
// read, and a cancelled call returns at once and sends CANCEL.
func TestCallerReadsOnlyWithDeadlines(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cancelled := make(chan struct{})
	reqs := make(chan uint32, 8)
	c := scripted(t, lis, func() (net.Conn, error) {
		nc, err := net.Dial("tcp", lis.Addr().String())
		return noDeadlineConn{nc}, err
	}, Options{KeepaliveInterval: -1}, func(nc net.Conn, rd *wire.Reader) {
		if _, ok := echoOnce(nc, rd, 5); !ok {
			return
		}
		for { // never answers; reports CANCEL
			f, err := rd.ReadFrame()
			if err != nil {
				return
			}
			switch f.Kind {
			case wire.KindRequest:
				reqs <- f.ID
			case wire.KindCancel:
				close(cancelled)
			}
		}
	})
	d := invokeAsync(context.Background(), c, small)
	if r := wait(t, d); r.err != nil {
		t.Fatal(r.err)
	}
	time.Sleep(20 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	a := invokeAsync(ctx, c, small)
	<-reqs
	cancel()
	select {
	case r := <-a:
		if status.Code(r.err) != codes.Canceled {
			t.Fatalf("cancelled call: %v", r.err)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("a cancelled call did not return within 2 s (role %v)", func() uint8 { r, _ := roleOf(c); return r }())
	}
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Errorf("no CANCEL sent")
	}
}

// TestCallerWritingHoldsNoRole checks a caller alone on the connection
// whose request write blocks because the server is blocked writing to us
// (a server's connection goroutine stops reading while its output backs
// up; here: late answers to calls the client abandoned). The caller only
// reserves the role until its request is written, so the reader takes it
// after readerRetake and reads; had the caller held it, nobody would read
// and the two ends would deadlock until a write timeout.
func TestCallerWritingHoldsNoRole(t *testing.T) {
	for _, reads := range []bool{false, true} {
		t.Run(map[bool]string{false: "reader-only", true: "caller-reads"}[reads], func(t *testing.T) {
			SetCallerReads(t, reads)
			testCallerHoldsRoleWhileWriting(t)
		})
	}
}

func testCallerHoldsRoleWhileWriting(t *testing.T) {
	scriptedRetake = 200 * time.Millisecond // a role free or reserved this long goes to the reader
	defer func() { scriptedRetake = 0 }()
	const abandoned = 16
	const late = 4 << 20 // each late answer
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan uint32, 16)
	c := scripted(t, lis, func() (net.Conn, error) { return net.Dial("tcp", lis.Addr().String()) },
		Options{KeepaliveInterval: -1}, func(nc net.Conn, rd *wire.Reader) {
			tc := nc.(*net.TCPConn)
			_ = tc.SetReadBuffer(64 << 10)
			_ = tc.SetWriteBuffer(64 << 10)
			if _, ok := echoOnce(nc, rd, 5); !ok { // warm-up
				return
			}
			var ids []uint32
			cancels := 0
			for cancels < abandoned {
				f, err := rd.ReadFrame()
				if err != nil {
					return
				}
				switch f.Kind {
				case wire.KindRequest:
					ids = append(ids, f.ID)
					reqs <- f.ID
				case wire.KindCancel:
					cancels++
				}
			}
			// The late answers, written as a server's single connection
			// goroutine writes them: it reads nothing meanwhile.
			msg, _ := proto.Marshal(&calculatorv1.CalculateResponse{Result: 1})
			msg = protowire.AppendTag(msg, 1000, protowire.BytesType)
			msg = protowire.AppendBytes(msg, make([]byte, late))
			for _, id := range ids {
				if _, err := nc.Write(wire.AppendMessageFrame(nil, wire.KindResponse, id, msg, 0)); err != nil {
					return
				}
			}
			echoOnce(nc, rd, 9)
			_, _ = nc.Read(make([]byte, 1)) // until the client closes
		})
	d := invokeAsync(context.Background(), c, small)
	if r := wait(t, d); r.err != nil {
		t.Fatal(r.err)
	}
	big := &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}
	raw, _ := proto.Marshal(big)
	raw = protowire.AppendTag(raw, 1000, protowire.BytesType)
	raw = protowire.AppendBytes(raw, make([]byte, 16<<20))
	big = new(calculatorv1.CalculateRequest)
	if err := proto.Unmarshal(raw, big); err != nil {
		t.Fatal(err)
	}
	// Calls with large answers that time out: the client abandons them.
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for range abandoned {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := new(calculatorv1.CalculateResponse)
			_ = c.Invoke(ctx, calculatorv1.CalculatorService_Calculate_FullMethodName, small, resp)
		}()
	}
	for range abandoned {
		<-reqs
	}
	cancel()
	wg.Wait()
	// The reader drops the first late answer, finds nothing pending and
	// gives the role up while the rest is still coming.
	if callerReads {
		for r, _ := roleOf(c); r != roleFree; r, _ = roleOf(c) {
			time.Sleep(50 * time.Microsecond) // free for 10 ms before the retake
		}
	}
	xctx, xcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer xcancel()
	x := invokeAsync(xctx, c, big)
	select {
	case r := <-x:
		if r.err != nil || r.resp.GetResult() != 9 {
			t.Errorf("big call: %v, %v", r.resp, r.err)
		}
	case <-time.After(8 * time.Second):
		r, id := roleOf(c)
		t.Errorf("big call with a 3 s deadline not done after 8 s: role %d reading %d (deadlock: the role holder is blocked writing)", r, id)
	}
}

// TestNoDispatchAfterFail checks that nothing is dispatched after a
// caller reading its own answer failed the connection on a frame that
// ReadFrame consumed (ErrUnknownKind; a dispatch error does the same):
// the reader it hands the role to must not go on with the frames buffered
// after it (here a GOAWAY, which would replace the real cause with "use
// of closed network connection").
func TestNoDispatchAfterFail(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := scripted(t, lis, func() (net.Conn, error) { return net.Dial("tcp", lis.Addr().String()) },
		Options{KeepaliveInterval: -1}, func(nc net.Conn, rd *wire.Reader) {
			if _, ok := echoOnce(nc, rd, 5); !ok {
				return
			}
			for {
				f, err := rd.ReadFrame()
				if err != nil {
					return
				}
				if f.Kind == wire.KindRequest {
					b := wire.AppendFrame(nil, wire.Kind(0x7e), 0, 0, nil) // a kind from a newer server
					b = wire.AppendGoAwayFrame(b, 0, &spb.Status{Message: "bye"})
					b = append(b, answer(f.ID, 1, 0)...)
					_, _ = nc.Write(b)
				}
			}
		})
	d := invokeAsync(context.Background(), c, small)
	if r := wait(t, d); r.err != nil {
		t.Fatal(r.err)
	}
	waitRole(t, c, roleFree)
	r := wait(t, invokeAsync(context.Background(), c, small))
	t.Logf("call: %v", r.err)
	<-c.readerOut
	c.mu.Lock()
	cerr, goAway := c.err, c.goAway
	c.mu.Unlock()
	t.Logf("conn error: %v (goAway %v)", cerr, goAway)
	if goAway || !strings.Contains(cerr.Error(), "unknown frame kind") {
		t.Errorf("frames were dispatched after the connection failed: error %q, goAway %v", cerr, goAway)
	}
}

var _ = os.ErrDeadlineExceeded

var scriptedRetake time.Duration
