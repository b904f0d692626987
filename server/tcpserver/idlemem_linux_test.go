//go:build linux && !race

// The race detector shadows every allocation: scripts/test.sh runs this
// file in a build without it, with the allocation budgets.

package tcpserver_test

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/calccodec"
	"github.com/calcrpc/calc/internal/wire"
	"github.com/calcrpc/calc/server/calculator"
	"github.com/calcrpc/calc/server/interceptor"
	"github.com/calcrpc/calc/server/tcpserver"
)

// idleHeapBudget is the most Go heap, in bytes, that one parked idle
// connection may keep live on the server after a garbage collection, once
// the parker has detached it (park_linux.go: its net.TCPConn, poll.FD and
// addresses are gone): the connection state, its writer without a buffer,
// its context and its entries in the server's maps.
const idleHeapBudget = 900

// idleConns is how many connections TestIdleConnHeap parks: enough that a
// few kilobytes of unrelated heap change move the figure by a few bytes.
const idleConns = 1000

// TestIdleConnHeap measures what a parked idle connection keeps on the
// server: it opens idleConns connections whose client side is a bare
// socket (no Go heap), makes one Calculate call on each, waits until every
// one is parked (no goroutine), collects garbage and compares the live
// heap, the stacks and the runtime's own off-heap memory with what they
// were before. Run it with -v for the live heap per connection by the
// function that allocated it; CALC_IDLE_HEAP_PROFILE=FILE writes the heap
// profile (every allocation sampled) for go tool pprof.
func TestIdleConnHeap(t *testing.T) {
	n := idleConns
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(4*n+256) {
		n = int(lim.Cur-256) / 4 // 2n connections, and both ends of each live here
	}
	if n < 100 {
		t.Fatalf("RLIMIT_NOFILE %d leaves room for %d connections: need 100", lim.Cur, n)
	}
	tcpserver.SetDetachAfter(t, 0)
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := tcpserver.New(tcpserver.Options{
		Logger:                logger,
		UnaryInterceptors:     interceptor.Unary(logger, 0),
		StreamInterceptors:    interceptor.Stream(logger, 0),
		InlineMethods:         calculator.CheapMethods,
		Codec:                 calccodec.Codec{},
		MaxConnections:        4 * n,
		MaxConnectionsPerAddr: 4 * n,
	})
	calculatorv1.RegisterCalculatorServiceServer(srv, calculator.New())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Shutdown(t.Context())
	addr := lis.Addr().(*net.TCPAddr)

	msg, _ := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 2, Rhs: 3})
	hello := append(wire.AppendPreface(nil), request(1, calculate, 0, msg)...)
	// A first connection warms what every connection shares (the method
	// table's first use, pools, the parker's epoll instance and loop).
	warm := rawCall(t, addr, hello)
	defer syscall.Close(warm)
	waitParked(t, srv, 1)
	waitDetached(t, srv, 1, "the first connection")

	fds := make([]int, 0, 2*n)
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	open := func() {
		for range n {
			fds = append(fds, rawCall(t, addr, hello))
		}
		waitParked(t, srv, len(fds)+1)
		waitDetached(t, srv, len(fds)+1, "after opening")
	}

	// First n connections with the heap profile sampling as usual (every
	// allocation sampled costs the runtime a record of its own, outside
	// the heap), for the runtime's memory. Their opening also leaves what
	// the next n reuse: goroutines (the runtime keeps every goroutine it
	// ever made), the maps' growth.
	before := settledMem()
	open()
	after := settledMem()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	t.Logf("%d idle connections, per connection: heap %.0f B (spans in use %.0f B), stacks %.0f B, "+
		"span metadata %.0f B, GC metadata %.0f B, other runtime memory (poll descriptors, finalizers) %.0f B",
		n, per(after.HeapAlloc, before.HeapAlloc), per(after.HeapInuse, before.HeapInuse), per(after.StackInuse, before.StackInuse),
		per(after.MSpanInuse, before.MSpanInuse), per(after.GCSys, before.GCSys), per(after.OtherSys, before.OtherSys))

	// Then n more with every allocation sampled: their live heap, and
	// where it goes.
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	open()
	final := settledMem()
	heap := per(final.HeapAlloc, after.HeapAlloc)
	t.Logf("%d more: live heap %.0f B per connection", n, heap)
	logHeapSites(t, n)
	if path := os.Getenv("CALC_IDLE_HEAP_PROFILE"); path != "" {
		writeHeapProfile(t, path)
	}
	if heap > idleHeapBudget {
		t.Fatalf("%.0f bytes of live heap per idle connection, budget %d", heap, idleHeapBudget)
	}
}

// rawCall opens a connection from a bare socket, sends hello (the preface
// and one Calculate call) and reads until the call's RESPONSE. It returns
// the socket's descriptor, open.
func rawCall(t *testing.T, addr *net.TCPAddr, hello []byte) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	tv := syscall.Timeval{Sec: 10}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	if _, err := syscall.Write(fd, hello); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	var buf [256]byte
	have := 0
	for {
		// Frames: a 4-byte length, then the kind; SETTINGS comes first.
		for have >= 5 {
			size := 4 + int(binary.BigEndian.Uint32(buf[:4]))
			if have < size {
				break
			}
			if wire.Kind(buf[4]) == wire.KindResponse {
				return fd
			}
			have = copy(buf[:], buf[size:have])
		}
		m, err := syscall.Read(fd, buf[have:])
		if err != nil || m <= 0 {
			syscall.Close(fd)
			t.Fatalf("reading the answer: %d, %v", m, err)
		}
		have += m
	}
}

// waitParked waits until srv holds n connections parked, with no
// goroutine.
func waitParked(t *testing.T, srv *tcpserver.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for srv.Stats().ConnectionsIdle < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", srv.Stats().ConnectionsIdle, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settledMem collects garbage twice (the second so that what the first
// freed through finalizers and weak pointers goes too) and reads the
// memory statistics.
func settledMem() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// logHeapSites logs the live heap per connection by the function that
// allocated it (the first frame outside the runtime), largest first, for
// the sites that hold at least 8 bytes per connection.
func logHeapSites(t *testing.T, n int) {
	recs := make([]runtime.MemProfileRecord, 1024)
	var got int
	for {
		var ok bool
		if got, ok = runtime.MemProfile(recs, false); ok {
			break
		}
		recs = make([]runtime.MemProfileRecord, got+256)
	}
	type site struct {
		fn           string
		bytes, count int64
	}
	bySite := map[string]*site{}
	for _, r := range recs[:got] {
		fn := "?"
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if !strings.HasPrefix(f.Function, "runtime.") {
				fn = fmt.Sprintf("%s (%s:%d)", f.Function, f.File[strings.LastIndexByte(f.File, '/')+1:], f.Line)
				break
			}
			if !more {
				break
			}
		}
		s := bySite[fn]
		if s == nil {
			s = &site{fn: fn}
			bySite[fn] = s
		}
		s.bytes += r.InUseBytes()
		s.count += r.InUseObjects()
	}
	sites := make([]*site, 0, len(bySite))
	for _, s := range bySite {
		if s.bytes >= int64(8*n) {
			sites = append(sites, s)
		}
	}
	slices.SortFunc(sites, func(a, b *site) int { return cmp.Compare(b.bytes, a.bytes) })
	var b strings.Builder
	for _, s := range sites {
		fmt.Fprintf(&b, "\n%6.0f B  %5.2f objects  %s", float64(s.bytes)/float64(n), float64(s.count)/float64(n), s.fn)
	}
	t.Logf("live heap per connection by allocating function (sites of at least 8 B per connection; they include what the whole server holds):%s", b.String())
}

// writeHeapProfile writes the heap profile to path.
func writeHeapProfile(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}
