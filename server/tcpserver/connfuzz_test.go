package tcpserver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/tcpserver"
)

// FuzzConnection drives a real Server, serving the calculator, through an
// arbitrary sequence of client operations on one connection over in-memory
// pipes, and checks the connection's state machine:
//
//  1. every REQUEST the server accepted gets exactly one final answer
//     (RESPONSE or STATUS), and nothing follows it for that id; when the
//     server sends GOAWAY, the calls at or below its last accepted id are
//     the ones answered and those above it are not (PROTOCOL.md section 5);
//     a GOAWAY with an error comes only after the client broke the protocol;
//  2. once the client has closed its side, the server closes the
//     connection, and every goroutine the connection started ends;
//  3. Shutdown completes, and Serve returns ErrServerClosed.
//
// The input is a sequence of operations (connOp), each an op byte and its
// argument bytes. The pipes are not sockets, so the connection is served by
// goroutines alone (the Linux parker only takes sockets).
func FuzzConnection(f *testing.F) {
	for _, seed := range connSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		runConnOps(t, in)
	})
}

// The operations of FuzzConnection's input.
const (
	opCalculate     = iota // flags, lhs, rhs: a unary Calculate, inline (flags&1: a deadline budget of flags>>1 µs)
	opEvaluate             // n, n bytes: a unary Evaluate of that expression, in a goroutine of its own
	opStreamOpen           // a CalculateStream REQUEST
	opStreamMessage        // which, lhs: a MESSAGE for an open stream (or for id which, if none is open)
	opHalfClose            // which: a HALF_CLOSE
	opCancel               // which: a CANCEL for an earlier call (or for id which)
	opPing                 // n: a PING of n%72 bytes (over 64 is a protocol error)
	opGarbage              // n, n bytes: raw bytes; the frame boundaries are lost
	opBadFrame             // variant: a frame the server must refuse (see badFrame)
	opBadRequest           // variant: a well-formed REQUEST the server must answer with an error
	opStaleID              // a REQUEST reusing the last id: a protocol error
	opPause                // a pause longer than the server's frame timeout
	opShutdown             // Shutdown starts, in the background
	opCloseWrite           // the client closes its side; later operations are not sent
	numConnOps
)

// connSeeds cover every operation.
var connSeeds = [][]byte{
	{},
	{opCalculate, 0, 2, 3, opCalculate, 0, 4, 0, opCalculate, 1, 1, 1, opCalculate, 0x21, 7, 8},
	{opEvaluate, 5, '1', '+', '2', '*', '3', opEvaluate, 3, '1', '/', '0', opCalculate, 0, 1, 1},
	{opStreamOpen, opStreamMessage, 0, 5, opStreamMessage, 0, 6, opHalfClose, 0, opCalculate, 0, 1, 2},
	{opStreamOpen, opStreamOpen, opStreamMessage, 1, 9, opCancel, 0, opCancel, 1, opStreamMessage, 0, 1},
	{opEvaluate, 7, '2', '^', '6', '0', '0', '0', '0', opCancel, 0, opPing, 8, opPing, 0},
	{opCalculate, 0, 1, 2, opPing, 70, opCalculate, 0, 1, 2},
	{opCalculate, 0, 1, 2, opGarbage, 4, 0xde, 0xad, 0xbe, 0xef, opCalculate, 0, 1, 2},
	{opCalculate, 0, 1, 2, opBadFrame, 0, opCalculate, 0, 3, 4},
	{opCalculate, 0, 1, 2, opBadFrame, 1},
	{opCalculate, 0, 1, 2, opBadFrame, 2, opCalculate, 0, 3, 4},
	{opCalculate, 0, 1, 2, opBadFrame, 3},
	{opCalculate, 0, 1, 2, opBadFrame, 4},
	{opCalculate, 0, 1, 2, opBadFrame, 5},
	{opBadRequest, 0, opBadRequest, 1, opBadRequest, 2, opBadRequest, 3, opBadRequest, 4, opBadRequest, 5, opBadRequest, 6, opCalculate, 0, 1, 2},
	{opCalculate, 0, 1, 2, opStaleID, opCalculate, 0, 1, 2},
	{opStreamOpen, opCalculate, 0, 1, 2, opPause, opStreamMessage, 0, 3, opCalculate, 0, 5, 6},
	{opStreamOpen, opEvaluate, 1, '9', opShutdown, opCalculate, 0, 1, 2, opStreamMessage, 0, 4, opHalfClose, 0},
	{opCalculate, 0, 1, 2, opShutdown},
	{opStreamOpen, opCloseWrite, opCalculate, 0, 1, 2},
}

const (
	fuzzCalculate = "/calculator.v1.CalculatorService/Calculate"
	fuzzEvaluate  = "/calculator.v1.CalculatorService/Evaluate"
	fuzzStream    = "/calculator.v1.CalculatorService/CalculateStream"
)

// connFrameTimeout is the fuzzed server's frame timeout: short, so that
// opPause outlasts it.
const connFrameTimeout = 50 * time.Millisecond

// fuzzWait bounds every wait of an iteration: a server that hangs fails the
// iteration, not the whole run.
const fuzzWait = 5 * time.Second

// sentCall is what the client knows of a call it sent.
type sentCall struct {
	stream bool
}

// connModel is the client's side of one fuzzed connection.
type connModel struct {
	t        *testing.T
	nc       *halfPipe // the client's end
	in       []byte
	nextID   uint32
	lastSent uint32              // highest REQUEST id sent
	calls    map[uint32]sentCall // fresh REQUESTs written whole while in step with the server
	order    []uint32            // their ids, in order
	streams  []uint32
	bound    map[uint32]bool // method refs bound
	pings    int             // valid PINGs written whole
	pingsDue int             // of them, those sent in step, which the server must answer unless it drains
	pauses   int

	desync   bool // bytes sent that make the frame boundaries unknowable
	violated bool // a frame sent in step that the server must answer with GOAWAY
	draining bool // Shutdown started
	closed   bool // the write side is closed, or a write failed
}

// next returns the next input byte, or 0 past the end.
func (m *connModel) next() byte {
	if len(m.in) == 0 {
		return 0
	}
	b := m.in[0]
	m.in = m.in[1:]
	return b
}

// send writes b whole, or marks the connection closed.
func (m *connModel) send(b []byte) bool {
	if m.closed {
		return false
	}
	_ = m.nc.SetWriteDeadline(time.Now().Add(fuzzWait))
	if _, err := m.nc.Write(b); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			m.closed = true // the server closed the connection
			return false
		}
		m.t.Fatalf("write: %v (the server stopped reading)", err)
	}
	return true
}

// inStep reports whether the server reads frames where the client wrote
// them, and processes them.
func (m *connModel) inStep() bool { return !m.desync && !m.violated }

// request sends a fresh REQUEST for method (ref, bound on first use) with
// msg.
func (m *connModel) request(ref uint32, method string, h wire.RequestHeader, msg []byte, flags wire.Flags, stream bool) {
	m.nextID++
	id := m.nextID
	h.MethodRef = ref
	if !m.bound[ref] {
		h.MethodName = method
	}
	p, hflags := wire.AppendRequestHeader(nil, &h)
	frame := wire.AppendFrame(nil, wire.KindRequest, flags|hflags, id, append(p, msg...))
	inStep := m.inStep()
	if !m.send(frame) {
		return
	}
	m.lastSent = id
	if h.MethodName != "" {
		m.bound[ref] = true
	}
	if inStep {
		m.calls[id] = sentCall{stream: stream}
		m.order = append(m.order, id)
		if stream {
			m.streams = append(m.streams, id)
		}
	}
}

// target picks a call id for a MESSAGE, HALF_CLOSE or CANCEL: one of ids,
// or any id when there is none.
func target(which byte, ids []uint32) uint32 {
	if len(ids) == 0 {
		return uint32(which)
	}
	return ids[int(which)%len(ids)]
}

func calcMsg(op, lhs, rhs byte) []byte {
	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{
		Operator: calculatorv1.Operator(op % 8), Lhs: int64(int8(lhs)), Rhs: int64(int8(rhs))})
	return msg
}

// step runs one operation; it reports false when no more can be sent.
func (m *connModel) step(srv *tcpserver.Server, shutdown chan<- error) bool {
	switch op := m.next() % numConnOps; op {
	case opCalculate:
		flags, lhs, rhs := m.next(), m.next(), m.next()
		h := wire.RequestHeader{}
		if flags&1 != 0 {
			h.HasTimeout, h.Timeout = true, time.Duration(flags>>1)*time.Microsecond
		}
		m.request(1, fuzzCalculate, h, calcMsg(flags>>4, lhs, rhs), 0, false)
	case opEvaluate:
		n := int(m.next() % 16)
		var expr []byte
		for range n {
			expr = append(expr, m.next())
		}
		msg, _ := proto.Marshal(&calculatorv1.EvaluateRequest{Expression: strings.ToValidUTF8(string(expr), "?")})
		m.request(2, fuzzEvaluate, wire.RequestHeader{}, msg, 0, false)
	case opStreamOpen:
		m.request(3, fuzzStream, wire.RequestHeader{}, nil, 0, true)
	case opStreamMessage:
		id, lhs := target(m.next(), m.streams), m.next()
		msg, _ := proto.Marshal(&calculatorv1.CalculateStreamRequest{Id: uint64(lhs),
			Calculation: &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: int64(lhs), Rhs: 1}})
		m.send(wire.AppendFrame(nil, wire.KindMessage, 0, id, msg))
	case opHalfClose:
		m.send(wire.AppendFrame(nil, wire.KindHalfClose, 0, target(m.next(), m.streams), nil))
	case opCancel:
		m.send(wire.AppendFrame(nil, wire.KindCancel, 0, target(m.next(), m.order), nil))
	case opPing:
		n := int(m.next() % 72)
		inStep := m.inStep()
		if m.send(wire.AppendFrame(nil, wire.KindPing, 0, 0, make([]byte, n))) {
			switch {
			case n > 64 && !m.desync:
				m.violated = true
			case n <= 64:
				m.pings++
				if inStep {
					m.pingsDue++
				}
			}
		}
	case opGarbage:
		n := int(m.next()%32) + 1
		var b []byte
		for range n {
			b = append(b, m.next())
		}
		if m.send(b) {
			m.desync = true
		}
	case opBadFrame:
		frame, violates := badFrame(m.next())
		if m.send(frame) {
			if violates && !m.desync {
				m.violated = true
			} else {
				m.desync = true
			}
		}
	case opBadRequest:
		m.badRequest(m.next())
	case opStaleID:
		if m.lastSent == 0 {
			return true
		}
		if m.send(wire.AppendFrame(nil, wire.KindRequest, 0, m.lastSent, []byte{1})) && !m.desync {
			m.violated = true
		}
	case opPause:
		if m.pauses < 2 {
			m.pauses++
			time.Sleep(connFrameTimeout + 20*time.Millisecond)
		}
	case opShutdown:
		if !m.draining {
			m.draining = true
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
				defer cancel()
				shutdown <- srv.Shutdown(ctx)
			}()
		}
	case opCloseWrite:
		return false
	}
	return !m.closed
}

// badFrame returns a frame the server must refuse, and whether it keeps the
// frame boundaries known (a GOAWAY follows) or loses them.
func badFrame(variant byte) ([]byte, bool) {
	switch variant % 6 {
	case 0: // a length below the header's
		return []byte{0, 0, 0, 3, byte(wire.KindPing), 0, 0}, true
	case 1: // a length above the max frame size
		return []byte{0xff, 0xff, 0xff, 0xff, byte(wire.KindRequest), 0, 0, 0, 0, 9}, true
	case 2: // a length that promises more than is sent
		return []byte{0, 0, 0, 40, byte(wire.KindPing), 0, 0, 0, 0, 0, 1, 2}, false
	case 3: // an unknown kind
		return wire.AppendFrame(nil, 0x3f, 0, 1, nil), true
	case 4: // a kind only the server sends
		return wire.AppendFrame(nil, wire.KindStatus, 0, 1, nil), true
	default: // a PONG with an id
		return wire.AppendFrame(nil, wire.KindPong, 0, 7, nil), true
	}
}

// badRequest sends a well-formed REQUEST with a fresh id that the server
// must answer with an error STATUS.
func (m *connModel) badRequest(variant byte) {
	switch variant % 7 {
	case 0: // a ref never bound
		m.rawRequest(0, binary.AppendUvarint(nil, 99))
	case 1: // an unknown method
		p, fl := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 50, MethodName: "/calculator.v1.CalculatorService/Nope"})
		m.rawRequest(fl, p)
	case 2: // not a CalculateRequest
		p, fl := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 40, MethodName: fuzzCalculate})
		m.rawRequest(fl, append(p, 0xff, 0xff, 0xff))
	case 3: // a streaming REQUEST with a message
		p, fl := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 41, MethodName: fuzzStream})
		m.rawRequest(fl, append(p, 8, 1))
	case 4: // a name running past the payload
		m.rawRequest(wire.FlagMethodName, []byte{42, 100, '/'})
	case 5: // a corrupt snappy block
		p, fl := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 43, MethodName: fuzzCalculate})
		m.rawRequest(fl|wire.FlagCompressed, append(p, 5, 0xff, 0xff))
	default: // ref 44 bound to one method, then to another
		p, fl := wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 44, MethodName: fuzzEvaluate})
		m.rawRequest(fl, p)
		p, fl = wire.AppendRequestHeader(nil, &wire.RequestHeader{MethodRef: 44, MethodName: fuzzCalculate})
		m.rawRequest(fl, p)
	}
}

// rawRequest sends a REQUEST with a fresh id and payload as is.
func (m *connModel) rawRequest(flags wire.Flags, payload []byte) {
	m.nextID++
	id := m.nextID
	inStep := m.inStep()
	if m.send(wire.AppendFrame(nil, wire.KindRequest, flags, id, payload)) {
		m.lastSent = id
		if inStep {
			m.calls[id] = sentCall{}
			m.order = append(m.order, id)
		}
	}
}

// received is what the client read from the server.
type received struct {
	frames []wire.Frame // payloads copied
	err    error        // why reading stopped
}

// readAll reads frames until the connection ends.
func readAll(nc net.Conn) received {
	rd := wire.NewReader(nc, 0)
	var r received
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			r.err = err
			return r
		}
		f.Payload = append([]byte(nil), f.Payload...)
		r.frames = append(r.frames, f)
	}
}

// runConnOps is one iteration of FuzzConnection.
func runConnOps(t *testing.T, in []byte) {
	leaks := goleak.IgnoreCurrent()
	base := runtime.NumGoroutine()

	srv := tcpserver.New(tcpserver.Options{
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		InlineMethods: calculator.CheapMethods,
		FrameTimeout:  connFrameTimeout,
	})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	client := lis.dial()
	t.Cleanup(func() { // after a failure, leave nothing running for the next test
		if t.Failed() {
			client.Close()
			ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}
	})
	got := make(chan received, 1)
	go func() { got <- readAll(client) }()
	m := &connModel{t: t, nc: client, in: in, calls: map[uint32]sentCall{}, bound: map[uint32]bool{}}
	shutdown := make(chan error, 1)
	if m.send(wire.AppendPreface(nil)) {
		for len(m.in) > 0 && m.step(srv, shutdown) {
		}
	}
	_ = client.CloseWrite()

	// 2. The server closes the connection once the client has closed its side.
	_ = client.SetReadDeadline(time.Now().Add(fuzzWait))
	r := <-got
	if !errors.Is(r.err, io.EOF) {
		t.Fatalf("reading the server's answers ended with %v, want EOF (the server closing)", r.err)
	}
	client.Close()
	checkAnswers(t, m, r)

	// 3. Shutdown completes.
	if !m.draining {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(2 * fuzzWait):
		t.Fatal("Shutdown did not return")
	}
	if err := <-served; !errors.Is(err, tcpserver.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want ErrServerClosed", err)
	}

	// 2. Every goroutine the connection started has ended.
	deadline := time.Now().Add(fuzzWait)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after the connection closed: %v", goleak.Find(leaks))
		}
		time.Sleep(time.Millisecond)
	}
}

// checkAnswers checks invariant 1 on what the server sent.
func checkAnswers(t *testing.T, m *connModel, r received) {
	t.Helper()
	// The first frame is SETTINGS. A Shutdown that raced the handshake may
	// refuse the connection instead, closing it silently or after a GOAWAY
	// (PROTOCOL.md section 10): then no call was accepted.
	if len(r.frames) == 0 || r.frames[0].Kind != wire.KindSettings {
		if !m.draining || len(r.frames) > 1 || len(r.frames) == 1 && r.frames[0].Kind != wire.KindGoAway {
			t.Fatalf("the server's first frame is not SETTINGS: %s", describe(r.frames))
		}
		return
	}
	var (
		goAway   bool
		lastID   uint32
		goAwayOK bool
		pongs    int
		answered = map[uint32]wire.Kind{}
	)
	for _, f := range r.frames[1:] {
		switch f.Kind {
		case wire.KindGoAway:
			if goAway {
				t.Fatalf("two GOAWAYs: %s", describe(r.frames))
			}
			id, st, err := wire.ParseGoAway(f.Payload)
			if err != nil {
				t.Fatalf("GOAWAY: %v", err)
			}
			goAway, lastID, goAwayOK = true, id, st.GetCode() == int32(codes.OK)
			if !goAwayOK && m.inStep() {
				t.Fatalf("GOAWAY %v %q though the client kept to the protocol: %s", codes.Code(st.GetCode()), st.GetMessage(), describe(r.frames))
			}
		case wire.KindPong:
			pongs++
		case wire.KindResponse, wire.KindStatus, wire.KindMessage:
			if f.ID == 0 {
				t.Fatalf("%s for id 0", f.Kind)
			}
			if k, ok := answered[f.ID]; ok {
				t.Fatalf("call %d: %s after its answer %s: %s", f.ID, f.Kind, k, describe(r.frames))
			}
			c, known := m.calls[f.ID]
			switch {
			case !known && !m.desync:
				t.Fatalf("call %d: %s for a call the client did not send: %s", f.ID, f.Kind, describe(r.frames))
			case known && c.stream && f.Kind == wire.KindResponse:
				t.Fatalf("stream %d answered with RESPONSE", f.ID)
			case known && !c.stream && f.Kind == wire.KindMessage:
				t.Fatalf("unary call %d sent a MESSAGE", f.ID)
			}
			if f.Kind != wire.KindMessage {
				answered[f.ID] = f.Kind
			}
		default:
			t.Fatalf("the server sent %s: %s", f.Kind, describe(r.frames))
		}
	}
	if m.violated && !goAway {
		t.Fatalf("no GOAWAY after a protocol error: %s", describe(r.frames))
	}
	for id := range answered {
		if goAway && id > lastID {
			t.Fatalf("call %d answered, above GOAWAY's last accepted id %d: %s", id, lastID, describe(r.frames))
		}
	}
	for _, id := range m.order {
		_, ok := answered[id]
		switch {
		case !ok && (!goAway || id <= lastID):
			t.Fatalf("call %d accepted (GOAWAY %v, last id %d) but not answered: %s", id, goAway, lastID, describe(r.frames))
		case ok && goAway && id > lastID:
			t.Fatalf("call %d answered though above GOAWAY's last id %d", id, lastID)
		}
	}
	// A PING the server has read may meet the connection closing for a
	// drain before it is dispatched; garbage may make more PINGs.
	if pongs > m.pings && !m.desync || !m.draining && pongs < m.pingsDue {
		t.Fatalf("%d PONGs for %d PINGs (%d due): %s", pongs, m.pings, m.pingsDue, describe(r.frames))
	}
}

// describe lists frames for a failure message.
func describe(frames []wire.Frame) string {
	var b strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&b, "[%s %d", f.Kind, f.ID)
		switch f.Kind {
		case wire.KindStatus:
			if st, err := wire.ParseStatus(f.Payload); err == nil {
				fmt.Fprintf(&b, " %v %q", codes.Code(st.GetCode()), st.GetMessage())
			}
		case wire.KindGoAway:
			if id, st, err := wire.ParseGoAway(f.Payload); err == nil {
				fmt.Fprintf(&b, " last %d %v %q", id, codes.Code(st.GetCode()), st.GetMessage())
			}
		}
		b.WriteString("] ")
	}
	return b.String()
}

// pipeListener is a net.Listener of in-memory connections: dial hands the
// server the other end of a halfPipe.
type pipeListener struct {
	conns  chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closer.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client's end of a new connection the server accepts.
func (l *pipeListener) dial() *halfPipe {
	up, upServer := net.Pipe()     // client → server
	downServer, down := net.Pipe() // server → client
	select {
	case l.conns <- &halfPipe{r: upServer, w: downServer}:
	case <-l.done:
	}
	return &halfPipe{r: down, w: up}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// halfPipe is one end of a connection made of two net.Pipes, one per
// direction, so that either end can close its writing side alone, as TCP's
// half-close does. It is not a syscall.Conn: the server serves it with
// goroutines alone.
type halfPipe struct {
	r net.Conn // reads from the peer
	w net.Conn // writes to the peer
}

func (p *halfPipe) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *halfPipe) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *halfPipe) CloseWrite() error           { return p.w.Close() }
func (p *halfPipe) Close() error                { return errors.Join(p.r.Close(), p.w.Close()) }
func (p *halfPipe) LocalAddr() net.Addr         { return pipeAddr{} }
func (p *halfPipe) RemoteAddr() net.Addr        { return pipeAddr{} }
func (p *halfPipe) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetReadDeadline(t), p.w.SetWriteDeadline(t))
}
func (p *halfPipe) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *halfPipe) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }
