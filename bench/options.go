package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"time"
)

// Options are the load flags calc-bench and the echo floor share.
type Options struct {
	Conns, Concurrency, Pipeline int
	Duration, Warmup             time.Duration
	Count                        int64
	Rate                         float64
	Chart                        string
	Progress                     bool
	ServerPID                    int
	ServerPprof                  string
	AllowRemote                  bool
	CPUProfile                   string
}

// AddFlags registers the load flags on fs.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Conns, "conns", 1, "connections to open")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "concurrent callers (streams, for streaming), spread over the connections (default: one per connection)")
	fs.IntVar(&o.Pipeline, "pipeline", 1, "calls in flight per stream (streaming), or per connection (unary: sets --concurrency to conns × `W`)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time after the warm-up")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up time, excluded from every figure")
	fs.Int64Var(&o.Count, "count", 0, "stop after `N` measured calls (0: no bound; --duration still bounds the run)")
	fs.Float64Var(&o.Rate, "rate", 0, "open-loop fixed rate in calls/s in total, latency measured from each call's intended send time (0: closed loop)")
	fs.StringVar(&o.Chart, "chart", "", "write an SVG latency-percentile chart to `FILE`")
	fs.BoolVar(&o.Progress, "progress", false, "print a progress line on stderr every second")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "server process id: report its CPU per call (its RSS per connection with --idle, its RSS over a burst with --burst); Linux")
	fs.StringVar(&o.ServerPprof, "server-pprof", "", "server's net/http/pprof `address`: report its heap allocations per call")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a non-loopback server address")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write the load tool's own CPU profile over the measured window to `FILE` (go tool pprof)")
}

// Check validates o after fs was parsed and fills in the concurrency, which
// depends on other flags. With streaming, Concurrency counts streams, each
// keeping Pipeline calls in flight; otherwise it counts unary callers, and
// an explicit --pipeline W means W callers per connection.
func (o *Options) Check(fs *flag.FlagSet, streaming bool) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case o.Conns < 1:
		return errors.New("--conns must be at least 1")
	case o.Pipeline < 1:
		return errors.New("--pipeline must be at least 1")
	case set["concurrency"] && o.Concurrency < o.Conns:
		return fmt.Errorf("--concurrency %d is below --conns %d: some connections would carry no calls", o.Concurrency, o.Conns)
	case o.Duration <= 0:
		return errors.New("--duration must be positive: it bounds every run")
	case o.Warmup < 0:
		return errors.New("--warmup must not be negative")
	case o.Count < 0:
		return errors.New("--count must not be negative")
	case o.Rate < 0:
		return errors.New("--rate must not be negative")
	case o.ServerPID < 0:
		return errors.New("--server-pid must not be negative")
	}
	switch {
	case set["concurrency"]:
		if !streaming && set["pipeline"] {
			return errors.New("give --concurrency or --pipeline for unary calls, not both (--pipeline W means W calls per connection)")
		}
	case !streaming:
		o.Concurrency = o.Conns * o.Pipeline
	default:
		o.Concurrency = o.Conns
	}
	return nil
}

// CheckLoopback refuses, unless --allow-remote, an address (the server's
// or its pprof endpoint) that is not loopback. An address may be a
// comma-separated list of HOST:PORT or dns:///HOST:PORT, as --addr takes:
// every one must be loopback.
func (o *Options) CheckLoopback(ctx context.Context, addrs ...string) error {
	if o.AllowRemote {
		return nil
	}
	for _, list := range addrs {
		if list == "" {
			continue
		}
		for a := range strings.SplitSeq(strings.TrimPrefix(list, "dns:///"), ",") {
			if err := CheckLoopback(ctx, strings.TrimSpace(a)); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckLoopback returns an error unless host:port names only loopback
// addresses (a host name is resolved).
func CheckLoopback(ctx context.Context, hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", hostport)
	}
	ips := []netip.Addr{}
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = append(ips, ip)
	} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s is not a loopback address: benchmarking a remote server needs --allow-remote", hostport)
		}
	}
	return nil
}

// Server returns the server probes the flags ask for.
func (o *Options) Server() Server { return Server{PID: o.ServerPID, PprofAddr: o.ServerPprof} }

// Config returns the engine configuration, with a Snapshot that reads bc
// and the server probes; progress lines go to progress with --progress.
func (o *Options) Config(bc *ByteCounter, progress io.Writer) Config {
	cfg := Config{Duration: o.Duration, Warmup: o.Warmup, Count: o.Count, Rate: o.Rate, Snapshot: Snapshotter(bc, o.Server())}
	if o.CPUProfile != "" {
		cfg.Snapshot = profiled(o.CPUProfile, cfg.Snapshot)
	}
	if o.Progress {
		cfg.Progress = progress
	}
	return cfg
}

// Report returns a Report describing a run of these options; Fill adds the
// figures.
func (o *Options) Report(transport, rpc, addr string) *Report {
	return &Report{Transport: transport, RPC: rpc, Addr: addr, Conns: o.Conns, Concurrency: o.Concurrency,
		Pipeline: o.Pipeline, Rate: o.Rate, WarmupS: o.Warmup.Seconds()}
}

// Emit prints rep on w, as one JSON object or as text, and writes its chart
// if --chart was given.
func (o *Options) Emit(w io.Writer, rep *Report, asJSON bool) error {
	if o.Chart != "" {
		f, err := os.Create(o.Chart)
		if err != nil {
			return err
		}
		title := fmt.Sprintf("%s %s: %d conns, concurrency %d, pipeline %d", rep.Transport, rep.RPC, rep.Conns, rep.Concurrency, rep.Pipeline)
		sub := fmt.Sprintf("%d calls in %.1fs after %.1fs warm-up", rep.Calls, rep.DurationS, rep.WarmupS)
		err = WriteChart(f, title, sub, []Series{rep.Series(rep.Transport)})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if asJSON {
		return json.NewEncoder(w).Encode(rep)
	}
	return rep.WriteText(w)
}

// Series returns rep's latency distribution as a chart line named name.
func (r *Report) Series(name string) Series {
	return Series{
		Label: fmt.Sprintf("%s: %s calls/s, p50 %s, p99 %s, p99.9 %s, max %s", name, FormatCount(r.CallsPerSec),
			FormatMicros(r.P50US), FormatMicros(r.P99US), FormatMicros(r.P999US), FormatMicros(r.MaxUS)),
		Points: r.Percentiles,
	}
}

// profiled wraps snap, which the engine calls at the start and at the end of
// the measured window, so that the process's CPU profile covers the window
// and is written to path.
func profiled(path string, snap func() (Counters, error)) func() (Counters, error) {
	var f *os.File
	return func() (Counters, error) {
		if f == nil {
			out, err := os.Create(path)
			if err != nil {
				return Counters{}, err
			}
			if err := pprof.StartCPUProfile(out); err != nil {
				out.Close()
				return Counters{}, err
			}
			f = out
			return snap()
		}
		c, err := snap()
		pprof.StopCPUProfile()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return c, err
	}
}
