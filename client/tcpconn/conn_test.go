package tcpconn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/calcrpc/calc/client/tcpconn"
	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/tcpserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var add = &calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3}

// TestShutdownDrains shuts the server down with calls in flight: they
// complete, while new calls fail fast with UNAVAILABLE and ErrNotProcessed.
// The held calls are Evaluates, which the server runs in goroutines of
// their own (Calculate runs inline: a held one would hold its connection).
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	hold := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		entered <- struct{}{}
		<-release
		return handler(ctx, req)
	}
	srv := calcdtest.Start(t, calcd.Config{UnaryInterceptors: []grpc.UnaryServerInterceptor{hold}})
	conn := srv.DialTCP(t, tcpconn.Options{})
	client := calculatorv1.NewCalculatorServiceClient(conn)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Evaluate(context.Background(), &calculatorv1.EvaluateRequest{Expression: "2 + 3"})
			if err == nil && resp.GetResult() != "5" {
				err = errors.New("wrong result")
			}
			errs <- err
		}()
	}
	for range 3 {
		<-entered
	}
	shut := make(chan error, 1)
	go func() { shut <- srv.TCP.Shutdown(context.Background()) }()
	// Shutdown closes the listener, then sends GOAWAY: once dialling fails
	// and GOAWAY has had time to cross loopback, a new call is refused.
	for {
		nc, err := net.Dial("tcp", srv.TCPAddr)
		if err != nil {
			break
		}
		nc.Close()
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	_, err := client.Calculate(context.Background(), add)
	if status.Code(err) != codes.Unavailable || !errors.Is(err, tcpconn.ErrNotProcessed) {
		t.Fatalf("new call after GOAWAY: %v; want UNAVAILABLE, not processed", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("in-flight call: %v", err)
		}
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// fakeServer accepts one connection, answers the handshake and hands the
// connection to serve.
func fakeServer(t *testing.T, serve func(nc net.Conn, rd *wire.Reader)) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
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
		_, _ = nc.Write(wire.AppendFrame(nil, wire.KindSettings, 0, 0, wire.AppendSettings(nil, wire.Settings{CompressThreshold: 256})))
		serve(nc, wire.NewReader(nc, 0))
	}()
	t.Cleanup(func() { lis.Close(); <-done })
	return lis.Addr().String()
}

// TestGoAwayAboveLastID checks that calls above GOAWAY's last id fail as
// not processed while the calls below it are still answered.
func TestGoAwayAboveLastID(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn, rd *wire.Reader) {
		for range 3 { // three requests, ids 1..3
			if _, err := rd.ReadFrame(); err != nil {
				return
			}
		}
		five, _ := proto.Marshal(&calculatorv1.CalculateResponse{Result: 5})
		var b []byte
		b = wire.AppendFrame(b, wire.KindGoAway, 0, 0, wire.AppendGoAway(nil, 1, &spb.Status{Message: "draining"}))
		b = wire.AppendFrame(b, wire.KindResponse, 0, 1, five)
		_, _ = nc.Write(b)
	})
	conn, err := tcpconn.Dial(context.Background(), addr, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := calculatorv1.NewCalculatorServiceClient(conn)
	results := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = client.Calculate(context.Background(), add)
		}()
		time.Sleep(20 * time.Millisecond) // ids in order 1, 2, 3
	}
	wg.Wait()
	ok, lost := 0, 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, tcpconn.ErrNotProcessed) && status.Code(err) == codes.Unavailable:
			lost++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 || lost != 2 {
		t.Fatalf("%d answered and %d not processed; want 1 and 2", ok, lost)
	}
}

// TestIdleTimeoutAndKeepalive checks that the server closes an idle
// connection and that the client's pings keep one open.
func TestIdleTimeoutAndKeepalive(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{TCP: tcpserver.Options{IdleTimeout: 500 * time.Millisecond}})
	quiet := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconn.Options{KeepaliveInterval: -1}))
	// Ten pings per idle timeout: a loaded machine may delay a few.
	pinging := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconn.Options{KeepaliveInterval: 50 * time.Millisecond}))
	deadline := time.Now().Add(20 * time.Second)
	for srv.TCP.Stats().ConnectionsOpen > 1 { // until the server has closed the quiet one
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open: the idle one was not closed", srv.TCP.Stats().ConnectionsOpen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := quiet.Calculate(context.Background(), add); status.Code(err) != codes.Unavailable {
		t.Errorf("idle connection without pings: %v; want UNAVAILABLE", err)
	}
	if _, err := pinging.Calculate(context.Background(), add); err != nil {
		t.Errorf("connection kept alive by pings: %v", err)
	}
}

// TestDialRefused checks the error of a server that refuses with GOAWAY.
func TestDialRefused(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{TCP: tcpserver.Options{MaxConnections: 1}})
	srv.DialTCP(t, tcpconn.Options{})
	_, err := tcpconn.Dial(context.Background(), srv.TCPAddr, tcpconn.Options{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Dial past max connections: %v; want RESOURCE_EXHAUSTED", err)
	}
	if _, err := tcpconn.Dial(context.Background(), "127.0.0.1:1", tcpconn.Options{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Dial to a closed port: %v; want UNAVAILABLE", err)
	}
}

// TestClosedConn checks calls on a closed connection.
func TestClosedConn(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	conn, err := tcpconn.Dial(context.Background(), srv.TCPAddr, tcpconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, err := calculatorv1.NewCalculatorServiceClient(conn).Calculate(context.Background(), add); status.Code(err) != codes.Canceled {
		t.Fatalf("call on a closed conn: %v; want CANCELLED", err)
	}
}

// TestShutdownTimeoutAnswersCalls checks a stream across a drain: after
// GOAWAY it still works until Shutdown's context ends, and then it is
// answered UNAVAILABLE before the connection closes, not dropped.
func TestShutdownTimeoutAnswersCalls(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{})
	client := calculatorv1.NewCalculatorServiceClient(srv.DialTCP(t, tcpconn.Options{}))
	stream, err := client.CalculateStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(id uint64) error {
		if err := stream.Send(&calculatorv1.CalculateStreamRequest{Id: id, Calculation: add}); err != nil {
			return err
		}
		resp, err := stream.Recv()
		if err == nil && (resp.GetId() != id || resp.GetResult() != 5) {
			err = fmt.Errorf("answer %v", resp)
		}
		return err
	}
	if err := roundTrip(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.TCP.Shutdown(ctx) }()
	for !isDraining(srv.TCPAddr) { // GOAWAY has been sent once the listener is closed
		time.Sleep(5 * time.Millisecond)
	}
	if err := roundTrip(2); err != nil {
		t.Fatalf("stream during the drain: %v", err)
	}
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("open stream after the drain deadline: %v, want UNAVAILABLE from the server", err)
	}
}

// isDraining reports whether the server at addr no longer accepts.
func isDraining(addr string) bool {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return true
	}
	nc.Close()
	return false
}

// TestMessageOverServerLimit: a message over the server's announced
// MAX_MESSAGE_SIZE fails with RESOURCE_EXHAUSTED before it is sent, in a
// unary call and on a stream, and the connection and the stream go on.
func TestMessageOverServerLimit(t *testing.T) {
	srv := calcdtest.Start(t, calcd.Config{TCP: tcpserver.Options{MaxMessageSize: 1000}})
	conn := srv.DialTCP(t, tcpconn.Options{})
	client := calculatorv1.NewCalculatorServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	long := &calculatorv1.EvaluateRequest{Expression: "1" + strings.Repeat(" + 1", 300)}
	_, err := client.Evaluate(ctx, long)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "over the server's limit of 1000 bytes") {
		t.Fatalf("Evaluate of a 1,201-byte expression: %v, want RESOURCE_EXHAUSTED naming the limit", err)
	}
	if r, err := client.Calculate(ctx, add); err != nil || r.GetResult() != 5 {
		t.Fatalf("the next call: %v %v", r, err)
	}
	stream, err := client.CalculateStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := &calculatorv1.CalculateStreamRequest{Id: 1, Calculation: add}
	big.ProtoReflect().SetUnknown(make([]byte, 2000)) // a message the server would refuse
	if err := stream.Send(big); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream Send of a 2,000-byte message: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := stream.Send(&calculatorv1.CalculateStreamRequest{Id: 2, Calculation: add}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetId() != 2 || r.GetResult() != 5 {
		t.Fatalf("the stream after a refused message: %v %v", r, err)
	}
	_ = stream.CloseSend()
}
