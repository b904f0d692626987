package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
)

// connsPerSource is how many connections RunIdle opens from one loopback
// source address: a third of Linux's default ephemeral port range
// (32768-60999), which leaves room for the ports an earlier run's closed
// connections still hold in TIME_WAIT.
const connsPerSource = 9000

// idleDialers is how many connections RunIdle opens at once.
const idleDialers = 16

// IdleConfig configures RunIdle.
type IdleConfig struct {
	// Addr is the raw TCP server's address.
	Addr string
	// Conns is how many connections to open.
	Conns int
	// ServerPID is the server's process id, whose RSS is read.
	ServerPID int
	// Hold is how long the connections stay open, idle, before the RSS is
	// read the second time ("right after").
	Hold time.Duration
	// Settle, if positive, is how much longer they stay open, the RSS read
	// every SettleEvery, before it is read a last time ("settled"). A Go
	// server that sits idle collects garbage only when the runtime forces
	// it, 2 minutes after the last collection, and gives freed memory back
	// to the system after it: 260 s after the opening, at least one forced
	// collection has run and the scavenger has returned what it freed.
	Settle time.Duration
	// SettleEvery is how often the RSS is read while settling; 0 means 5 s.
	SettleEvery time.Duration
	// Timeout bounds each connection's handshake and call.
	Timeout time.Duration
	// Progress, if not nil, gets a line per second while connections open.
	Progress io.Writer
}

// IdleReport is the outcome of RunIdle, as calc-bench --idle --json prints
// it.
type IdleReport struct {
	Mode      string `json:"mode"` // "idle"
	Transport string `json:"transport"`
	Addr      string `json:"addr"`
	// Requested is --idle N; Conns counts the connections that opened and
	// answered their call; Errors counts the others by gRPC code.
	Requested int               `json:"requested"`
	Conns     int               `json:"conns"`
	Errors    map[string]uint64 `json:"errors"`
	// SourceAddrs is how many loopback source addresses the connections
	// came from, round robin.
	SourceAddrs int `json:"source_addrs"`
	// OpenS is how long opening and calling took.
	OpenS float64 `json:"open_s"`
	// The server's VmRSS before the first connection and after the hold,
	// and the difference per open connection.
	RSSBeforeBytes  int64   `json:"rss_before_bytes"`
	RSSAfterBytes   int64   `json:"rss_after_bytes"`
	RSSPerConnBytes float64 `json:"rss_per_conn_bytes"`
	// With --idle-settle: how long the connections were then held, the
	// server's VmRSS read every SettleEvery meanwhile (the last is the
	// settled RSS), and the settled RSS's difference from before per open
	// connection.
	SettleS                float64 `json:"settle_s,omitempty"`
	RSSSettle              []int64 `json:"rss_settle_bytes,omitempty"`
	RSSSettledBytes        int64   `json:"rss_settled_bytes,omitempty"`
	RSSSettledPerConnBytes float64 `json:"rss_settled_per_conn_bytes,omitempty"`
	// ConnsLost counts the connections found closed at the last reading:
	// the server's RSS then no longer holds all of them. Thousands of
	// connections opened at once arm their TCP keepalive timers together;
	// on loopback their probes arrive in bursts that overflow the
	// kernel's backlog (net.core.netdev_max_backlog), and a connection
	// whose nine probes are all dropped is aborted: with Go's default
	// keepalive (15 s, then every 15 s) about 150 s after it went quiet
	// (calcd's own waits 5 minutes before its first probe).
	ConnsLost int `json:"conns_lost,omitempty"`
}

// Settled reports whether r has a settled reading (--idle-settle) taken
// with every connection still open.
func (r *IdleReport) Settled() bool { return r.RSSSettledBytes > 0 && r.ConnsLost == 0 }

// WriteText writes r for a person to read.
func (r *IdleReport) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "idle %s %s: %d of %d connections open (from %d source addresses, in %.1fs)\n"+
		"  errors      %s\n  server RSS  %d KiB before, %d KiB right after: %.0f bytes per connection\n",
		r.Transport, r.Addr, r.Conns, r.Requested, r.SourceAddrs, r.OpenS, ErrorSummary(r.Errors),
		r.RSSBeforeBytes>>10, r.RSSAfterBytes>>10, r.RSSPerConnBytes)
	switch {
	case err == nil && r.Settled():
		_, err = fmt.Fprintf(w, "              %d KiB settled (%.0fs later): %.0f bytes per connection\n",
			r.RSSSettledBytes>>10, r.SettleS, r.RSSSettledPerConnBytes)
	case err == nil && r.ConnsLost > 0:
		_, err = fmt.Fprintf(w, "              %d KiB %.0fs later, but %d connections had closed by then: no settled figure\n",
			r.RSSSettledBytes>>10, r.SettleS, r.ConnsLost)
	}
	return err
}

// RunIdle measures what an idle raw TCP connection costs the server: it
// reads the server's RSS, opens cfg.Conns connections (from source
// addresses 127.0.0.1, 127.0.0.2 … round robin when the server is on IPv4
// loopback, to go past one address's ephemeral ports), makes one Calculate
// call on each, holds them idle for cfg.Hold, reads the RSS again and
// closes them. It raises this process's open-file limit as needed; the
// server needs its own limit and a --max-connections above cfg.Conns.
func RunIdle(ctx context.Context, cfg IdleConfig) (*IdleReport, error) {
	if err := RaiseFileLimit(uint64(cfg.Conns) + 256); err != nil {
		return nil, err
	}
	sources, err := idleSources(cfg.Addr, cfg.Conns)
	if err != nil {
		return nil, err
	}
	hello, err := idleHello()
	if err != nil {
		return nil, err
	}
	rep := &IdleReport{Mode: "idle", Transport: "tcp", Addr: cfg.Addr, Requested: cfg.Conns, SourceAddrs: max(len(sources), 1), Errors: map[string]uint64{}}
	if rep.RSSBeforeBytes, err = ProcRSS(cfg.ServerPID); err != nil {
		return nil, err
	}

	conns := make([]net.Conn, cfg.Conns)
	var errs [numCodes]atomic.Uint64
	var next, opened atomic.Int64
	begin := time.Now()
	done := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					fmt.Fprintf(cfg.Progress, "%5.0fs %8d of %d connections open\n", time.Since(begin).Seconds(), opened.Load(), cfg.Conns)
				case <-done:
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for range idleDialers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conns || ctx.Err() != nil {
					return
				}
				// No keepalive probes from this end: fewer packets in the
				// bursts that ConnsLost describes.
				d := net.Dialer{KeepAlive: -1}
				if len(sources) > 0 {
					d.LocalAddr = &net.TCPAddr{IP: sources[i%len(sources)].AsSlice()}
					d.Control = bindAddressNoPort
				}
				nc, err := idleConn(ctx, &d, cfg.Addr, hello, cfg.Timeout)
				if err != nil {
					errs[codeIndex(status.Code(err))].Add(1)
					continue
				}
				conns[i] = nc
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	close(done)
	rep.OpenS = time.Since(begin).Seconds()
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if rep.RSSAfterBytes, err = ProcRSS(cfg.ServerPID); err != nil {
		return nil, err
	}
	if cfg.Settle > 0 {
		if err := settle(ctx, cfg, rep); err != nil {
			return nil, err
		}
		rep.ConnsLost = countClosed(conns)
	}
	rep.Conns = int(opened.Load())
	for c := range errs {
		if n := errs[c].Load(); n > 0 {
			rep.Errors[wire.CodeName(codes.Code(c))] = n
		}
	}
	if rep.Conns > 0 {
		rep.RSSPerConnBytes = float64(rep.RSSAfterBytes-rep.RSSBeforeBytes) / float64(rep.Conns)
		if rep.RSSSettledBytes > 0 {
			rep.RSSSettledPerConnBytes = float64(rep.RSSSettledBytes-rep.RSSBeforeBytes) / float64(rep.Conns)
		}
	}
	return rep, nil
}

// settle holds the connections for cfg.Settle more (rounded up to a
// whole cfg.SettleEvery), reading the server's RSS every cfg.SettleEvery;
// the last reading is the settled one.
func settle(ctx context.Context, cfg IdleConfig, rep *IdleReport) error {
	every := cfg.SettleEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	every = min(every, cfg.Settle)
	begin := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		rss, err := ProcRSS(cfg.ServerPID)
		if err != nil {
			return err
		}
		rep.RSSSettle = append(rep.RSSSettle, rss)
		if held := time.Since(begin); held >= cfg.Settle {
			rep.RSSSettledBytes, rep.SettleS = rss, held.Seconds()
			return nil
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%5.0fs settling: server RSS %d KiB\n", time.Since(begin).Seconds(), rss>>10)
		}
	}
}

// idleSources returns the source addresses for n connections to addr:
// 127.0.0.1 … 127.0.0.k when addr is on IPv4 loopback, else none (the
// system picks).
func idleSources(addr string, n int) ([]netip.Addr, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--idle needs a numeric server address: %w", err)
	}
	if !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return nil, nil
	}
	k := max((n+connsPerSource-1)/connsPerSource, 1)
	sources := make([]netip.Addr, k)
	for i := range sources {
		sources[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)})
	}
	return sources, nil
}

// idleHello returns the bytes an idle connection starts with: the preface
// and call 1, Calculate(ADD, 1, 1), binding method ref 1.
func idleHello() ([]byte, error) {
	msg, err := proto.Marshal(&calculatorv1.CalculateRequest{Operator: calculatorv1.Operator_OPERATOR_ADD, Lhs: 1, Rhs: 1})
	if err != nil {
		return nil, err
	}
	b := wire.AppendPreface(nil)
	h := wire.RequestHeader{MethodRef: 1, MethodName: calculatorv1.CalculatorService_Calculate_FullMethodName}
	return wire.AppendRequest(b, 1, &h, msg, 0), nil
}

// idleConn opens one connection, sends hello and waits for the call's
// answer. It returns the connection idle, with no goroutine and no buffer.
func idleConn(ctx context.Context, d *net.Dialer, addr string, hello []byte, timeout time.Duration) (net.Conn, error) {
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial: %v", err)
	}
	err = idleCall(nc, hello, timeout)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// idleCall runs the handshake and call of idleConn.
func idleCall(nc net.Conn, hello []byte, timeout time.Duration) error {
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(hello); err != nil {
		return status.Errorf(codes.Unavailable, "write: %v", err)
	}
	rd := wire.NewReader(nc, 0)
	defer rd.Release()
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return status.Errorf(codes.Unavailable, "read: %v", err)
		}
		switch f.Kind {
		case wire.KindSettings, wire.KindPing:
		case wire.KindResponse:
			var resp calculatorv1.CalculateResponse
			if err := proto.Unmarshal(f.Payload, &resp); err != nil || resp.GetResult() != 2 {
				return status.Errorf(codes.DataLoss, "Calculate(ADD, 1, 1) answered %v (%v)", resp.GetResult(), err)
			}
			return nc.SetDeadline(time.Time{})
		case wire.KindStatus:
			st, err := wire.ParseStatus(f.Payload)
			if err != nil {
				return status.Errorf(codes.Internal, "%v", err)
			}
			if st.GetCode() == 0 {
				return status.Error(codes.Internal, "OK status without a response")
			}
			return status.ErrorProto(st)
		case wire.KindGoAway:
			_, st, err := wire.ParseGoAway(f.Payload)
			if err != nil {
				return status.Errorf(codes.Internal, "%v", err)
			}
			if st.GetCode() == 0 { // a graceful GOAWAY: the server is shutting down
				return status.Errorf(codes.Unavailable, "GOAWAY: %s", st.GetMessage())
			}
			return status.ErrorProto(st)
		default:
			return status.Errorf(codes.Internal, "unexpected %s frame", f.Kind)
		}
	}
}
