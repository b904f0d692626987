package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	calculatorv1 "github.com/calcrpc/calc/gen/calculator/v1"
	"github.com/calcrpc/calc/internal/wire"
)

// The bursts RunBurst makes.
const (
	// BurstFrames opens connections that each send the start of a nearly
	// maximal frame, slowly, and hold it unfinished: the server must
	// buffer what arrived until the rest comes.
	BurstFrames = "frames"
	// BurstStreams opens connections that each open many CalculateStream
	// streams and send them nothing.
	BurstStreams = "streams"
)

// burstPeakEvery is how often RunBurst reads the server's RSS while the
// burst is on, to find its peak.
const burstPeakEvery = 100 * time.Millisecond

// burstTrickleChunks is how many writes a frames burst spreads each
// connection's bytes over.
const burstTrickleChunks = 16

// BurstConfig configures RunBurst.
type BurstConfig struct {
	// Addr is the raw TCP server's address.
	Addr string
	// Kind is BurstFrames or BurstStreams.
	Kind string
	// Conns is how many connections to open, all at once.
	Conns int
	// Streams is how many streams each connection opens (BurstStreams).
	Streams int
	// Trickle is how many bytes of its frame each connection sends
	// (BurstFrames), spread evenly over TrickleTime. The frame's length
	// prefix claims a maximal message: wire.DefaultMaxMessageSize bytes
	// plus the request header, just under wire.DefaultMaxFrameSize.
	Trickle     int
	TrickleTime time.Duration
	// Hold is how long the connections stay open once the burst is sent
	// (and, for streams, answered), the server's RSS read all along for
	// its peak. A frames burst should send and hold within the server's
	// frame timeout (10 s by default).
	Hold time.Duration
	// Wait is how long the server's RSS is followed after the connections
	// close, read every SampleEvery and at the end.
	Wait, SampleEvery time.Duration
	// ServerPID is the server's process id, whose RSS is read.
	ServerPID int
	// Timeout bounds each connection's dial and, for streams, the wait
	// for the server to answer every stream.
	Timeout time.Duration
}

// RSSSample is the server's RSS some time after a burst's connections
// closed.
type RSSSample struct {
	AfterS float64 `json:"after_s"`
	Bytes  int64   `json:"bytes"`
}

// BurstReport is the outcome of RunBurst, as calc-bench --burst --json
// prints it.
type BurstReport struct {
	Mode  string `json:"mode"`  // "burst"
	Burst string `json:"burst"` // frames or streams
	Addr  string `json:"addr"`
	// Conns is how many connections were opened; StreamsPerConn how many
	// streams each opened (streams); FrameBytes the length prefix each
	// frame claimed and TrickleBytes how much of it each connection sent
	// (frames).
	Conns          int `json:"conns"`
	StreamsPerConn int `json:"streams_per_conn,omitempty"`
	FrameBytes     int `json:"frame_bytes,omitempty"`
	TrickleBytes   int `json:"trickle_bytes,omitempty"`
	// What the server answered: Admitted counts the connections it sent
	// SETTINGS; GoAways and Statuses count GOAWAY and STATUS frames by
	// code; StreamsOpen is how many streams it did not refuse (streams);
	// ClosedByServer counts the connections it closed before the burst
	// ended.
	Admitted       int               `json:"admitted"`
	GoAways        map[string]uint64 `json:"goaways"`
	Statuses       map[string]uint64 `json:"statuses"`
	StreamsOpen    int               `json:"streams_open,omitempty"`
	ClosedByServer int               `json:"closed_by_server"`
	// Errors counts, by gRPC code, connections that failed on this side:
	// a dial that failed, or streams the server did not answer in time.
	Errors map[string]uint64 `json:"errors"`
	// BurstS is the time from the first dial to the close of the
	// connections, the hold included.
	BurstS float64 `json:"burst_s"`
	// The server's VmRSS before the burst, at its highest while the
	// connections were open, right after they closed, and then every
	// sample interval until the wait's end (the last sample).
	RSSBeforeBytes int64       `json:"rss_before_bytes"`
	RSSPeakBytes   int64       `json:"rss_peak_bytes"`
	RSSClosedBytes int64       `json:"rss_closed_bytes"`
	RSSAfter       []RSSSample `json:"rss_after"`
}

// WriteText writes r for a person to read.
func (r *BurstReport) WriteText(w io.Writer) error {
	var what string
	if r.Burst == BurstStreams {
		what = fmt.Sprintf("%d connections × %d CalculateStream streams; %d streams left open", r.Conns, r.StreamsPerConn, r.StreamsOpen)
	} else {
		what = fmt.Sprintf("%d connections, each sending %d KiB of a %d-byte frame", r.Conns, r.TrickleBytes>>10, r.FrameBytes)
	}
	var after strings.Builder
	for _, s := range r.RSSAfter {
		fmt.Fprintf(&after, " %.0fs %.1f", s.AfterS, mib(s.Bytes))
	}
	_, err := fmt.Fprintf(w, "burst %s %s: %s (%.1fs)\n"+
		"  server      %d admitted; GOAWAY %s; STATUS %s; %d connections closed by the server\n"+
		"  errors      %s\n"+
		"  server RSS  %.1f MiB before, %.1f MiB at the peak, %.1f MiB as the connections closed\n"+
		"  after close (s MiB)%s\n",
		r.Burst, r.Addr, what, r.BurstS,
		r.Admitted, ErrorSummary(r.GoAways), ErrorSummary(r.Statuses), r.ClosedByServer,
		ErrorSummary(r.Errors),
		mib(r.RSSBeforeBytes), mib(r.RSSPeakBytes), mib(r.RSSClosedBytes), after.String())
	return err
}

// mib returns n bytes in MiB.
func mib(n int64) float64 { return float64(n) / (1 << 20) }

// burstConn is one connection of a burst and what the server told it.
// Its reader goroutine owns the counts until done is closed.
type burstConn struct {
	nc       net.Conn
	settings bool
	goAways  [numCodes]uint64
	statuses [numCodes]uint64
	// refused counts the STATUS frames read before the PONG.
	refused int
	// serverClosed is set when the connection ended before RunBurst
	// closed it.
	serverClosed bool
	failed       codes.Code // not OK: the connection failed on this side
	answered     chan struct{}
	done         chan struct{}
}

// read reads the server's frames until the connection ends, closing
// answered at the first PONG. closing tells a close of RunBurst's from
// the server's.
func (c *burstConn) read(closing *atomic.Bool) {
	defer close(c.done)
	rd := wire.NewReader(c.nc, 0)
	defer rd.Release()
	pong := false
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			c.serverClosed = !closing.Load()
			return
		}
		switch f.Kind {
		case wire.KindSettings:
			c.settings = true
		case wire.KindGoAway:
			code := codes.Unknown
			if _, st, err := wire.ParseGoAway(f.Payload); err == nil {
				code = codes.Code(st.GetCode())
			}
			c.goAways[codeIndex(code)]++
		case wire.KindStatus:
			code := codes.Unknown
			if st, err := wire.ParseStatus(f.Payload); err == nil {
				code = codes.Code(st.GetCode())
			}
			c.statuses[codeIndex(code)]++
			if !pong {
				c.refused++
			}
		case wire.KindPong:
			if !pong {
				pong = true
				close(c.answered)
			}
		}
	}
}

// RunBurst measures whether the server's memory comes back after a hostile
// burst: it reads the server's RSS, opens cfg.Conns raw TCP connections at
// once and makes the burst cfg.Kind names on each, holds them open for
// cfg.Hold while reading the RSS for its peak, closes them, and reads the
// RSS right away and then every cfg.SampleEvery for cfg.Wait. It counts
// what the server answered: GOAWAY and STATUS frames by code, and the
// connections it closed.
func RunBurst(ctx context.Context, cfg BurstConfig) (*BurstReport, error) {
	rep := &BurstReport{Mode: "burst", Burst: cfg.Kind, Addr: cfg.Addr, Conns: cfg.Conns,
		GoAways: map[string]uint64{}, Statuses: map[string]uint64{}, Errors: map[string]uint64{}}
	var send func(ctx context.Context, c *burstConn) error
	switch cfg.Kind {
	case BurstFrames:
		frame := burstFrame()
		rep.FrameBytes = len(frame) - wire.PrefaceSize - wire.LengthSize
		rep.TrickleBytes = min(cfg.Trickle, len(frame))
		send = func(ctx context.Context, c *burstConn) error {
			return trickle(ctx, c, frame[:rep.TrickleBytes], cfg.TrickleTime)
		}
	case BurstStreams:
		rep.StreamsPerConn = cfg.Streams
		streams := burstStreams(cfg.Streams)
		send = func(ctx context.Context, c *burstConn) error {
			return openStreams(ctx, c, streams, cfg.Timeout)
		}
	default:
		return nil, fmt.Errorf("bench: unknown burst %q (want %s or %s)", cfg.Kind, BurstFrames, BurstStreams)
	}
	if err := RaiseFileLimit(uint64(cfg.Conns) + 256); err != nil {
		return nil, err
	}
	var err error
	if rep.RSSBeforeBytes, err = ProcRSS(cfg.ServerPID); err != nil {
		return nil, err
	}

	peak := watchPeak(cfg.ServerPID)
	begin := time.Now()
	conns := make([]*burstConn, cfg.Conns)
	var closing atomic.Bool
	var wg sync.WaitGroup
	for i := range conns {
		c := &burstConn{answered: make(chan struct{}), done: make(chan struct{})}
		conns[i] = c
		wg.Go(func() {
			d := net.Dialer{Timeout: cfg.Timeout}
			nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
			if err != nil {
				c.failed = codes.Unavailable
				close(c.done)
				return
			}
			c.nc = nc
			go c.read(&closing)
			if err := send(ctx, c); err != nil {
				c.failed = status.Code(err)
			}
		})
	}
	wg.Wait()
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
	}
	rep.RSSPeakBytes, err = peak()
	closing.Store(true)
	for _, c := range conns {
		if c.nc != nil {
			c.nc.Close()
		}
	}
	closed := time.Now()
	rep.BurstS = closed.Sub(begin).Seconds()
	if err != nil {
		return nil, err
	}
	if rep.RSSClosedBytes, err = ProcRSS(cfg.ServerPID); err != nil {
		return nil, err
	}
	rep.RSSPeakBytes = max(rep.RSSPeakBytes, rep.RSSClosedBytes)
	for _, c := range conns {
		<-c.done
		rep.add(c)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.RSSAfter, err = followRSS(ctx, cfg.ServerPID, closed, cfg.Wait, cfg.SampleEvery)
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// add counts what the server told c.
func (r *BurstReport) add(c *burstConn) {
	if c.failed != codes.OK {
		r.Errors[wire.CodeName(c.failed)]++
	}
	if c.nc == nil {
		return
	}
	if c.settings {
		r.Admitted++
	}
	if c.serverClosed {
		r.ClosedByServer++
	}
	for code := range numCodes {
		if n := c.goAways[code]; n > 0 {
			r.GoAways[wire.CodeName(codes.Code(code))] += n
		}
		if n := c.statuses[code]; n > 0 {
			r.Statuses[wire.CodeName(codes.Code(code))] += n
		}
	}
	if r.Burst == BurstStreams && c.failed == codes.OK {
		r.StreamsOpen += r.StreamsPerConn - c.refused
	}
}

// watchPeak reads pid's RSS every burstPeakEvery until the function it
// returns is called, which reads it once more and returns the highest
// reading.
func watchPeak(pid int) func() (int64, error) {
	stop := make(chan struct{})
	var peak int64
	var firstErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(burstPeakEvery)
		defer t.Stop()
		for {
			rss, err := ProcRSS(pid)
			if err != nil {
				firstErr = err
				return
			}
			peak = max(peak, rss)
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
	}()
	return func() (int64, error) {
		close(stop)
		<-done
		if firstErr != nil {
			return 0, firstErr
		}
		rss, err := ProcRSS(pid)
		return max(peak, rss), err
	}
}

// followRSS reads pid's RSS every every after since, until wait has
// passed, and once more at wait.
func followRSS(ctx context.Context, pid int, since time.Time, wait, every time.Duration) ([]RSSSample, error) {
	var samples []RSSSample
	for at := every; ; at += every {
		at = min(at, wait)
		select {
		case <-time.After(time.Until(since.Add(at))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		rss, err := ProcRSS(pid)
		if err != nil {
			return nil, err
		}
		samples = append(samples, RSSSample{AfterS: time.Since(since).Seconds(), Bytes: rss})
		if at >= wait {
			return samples, nil
		}
	}
}

// burstFrame returns the preface and a REQUEST frame for Calculate, call
// 1, whose message is wire.DefaultMaxMessageSize zero bytes: a frame just
// under the max frame size that the server would refuse as a message only
// once it had all of it.
func burstFrame() []byte {
	h := wire.RequestHeader{MethodRef: 1, MethodName: calculatorv1.CalculatorService_Calculate_FullMethodName}
	return wire.AppendRequest(wire.AppendPreface(nil), 1, &h, make([]byte, wire.DefaultMaxMessageSize), 0)
}

// trickle writes b, which starts with the preface, in burstTrickleChunks
// writes spread over d, stopping early when the server closes c.
func trickle(ctx context.Context, c *burstConn, b []byte, d time.Duration) error {
	chunk := (len(b) + burstTrickleChunks - 1) / burstTrickleChunks
	pause := d / burstTrickleChunks
	for i := 0; len(b) > 0; i++ {
		if i > 0 {
			select {
			case <-time.After(pause):
			case <-c.done:
				return nil
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		n := min(chunk, len(b))
		if _, err := c.nc.Write(b[:n]); err != nil {
			return ignoreClosed(c, err)
		}
		b = b[n:]
	}
	return nil
}

// ignoreClosed returns nil for a write error that the server's close of c
// caused, else err as UNAVAILABLE.
func ignoreClosed(c *burstConn, err error) error {
	select {
	case <-c.done:
		return nil
	case <-time.After(time.Second): // the reader sees the close soon
	}
	return status.Errorf(codes.Unavailable, "write: %v", err)
}

// burstStreams returns the preface, n REQUEST frames opening
// CalculateStream calls 1 … n (the first binds method ref 1), and a PING:
// its PONG tells that the server has answered every stream it refused.
func burstStreams(n int) []byte {
	b := wire.AppendPreface(nil)
	h := wire.RequestHeader{MethodRef: 1, MethodName: calculatorv1.CalculatorService_CalculateStream_FullMethodName}
	for id := range uint32(n) {
		b = wire.AppendRequest(b, id+1, &h, nil, 0)
		h.MethodName = ""
	}
	return wire.AppendFrame(b, wire.KindPing, 0, 0, make([]byte, 8))
}

// openStreams writes b on c and waits, at most timeout, for the PONG
// that follows the server's answers; a connection the server closed
// first has been answered too.
func openStreams(ctx context.Context, c *burstConn, b []byte, timeout time.Duration) error {
	if _, err := c.nc.Write(b); err != nil {
		if err := ignoreClosed(c, err); err != nil {
			return err
		}
	}
	select {
	case <-c.answered:
		return nil
	case <-c.done:
		return nil
	case <-time.After(timeout):
		return status.Errorf(codes.DeadlineExceeded, "no answer to the streams in %v", timeout)
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}
