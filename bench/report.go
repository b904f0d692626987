package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/calcrpc/calc/internal/wire"
)

// Point is one point of a latency distribution: P percent of the calls took
// at most US microseconds.
type Point struct {
	P  float64 `json:"p"`
	US float64 `json:"us"`
}

// Report is the outcome of one load run, as calc-bench --json prints it:
// one JSON object. Per-call figures divide by every completed measured
// call, failed ones included.
type Report struct {
	Transport   string  `json:"transport"`
	RPC         string  `json:"rpc"`
	Addr        string  `json:"addr"`
	Conns       int     `json:"conns"`
	Concurrency int     `json:"concurrency"`
	Pipeline    int     `json:"pipeline"`
	Rate        float64 `json:"rate,omitempty"`
	WarmupS     float64 `json:"warmup_s"`

	// DurationS is the measured window in seconds.
	DurationS float64 `json:"duration_s"`
	// Calls counts the successful calls; CallsPerSec is Calls/DurationS.
	Calls       uint64  `json:"calls"`
	CallsPerSec float64 `json:"calls_per_sec"`
	// Errors counts the failed calls by gRPC code name.
	Errors map[string]uint64 `json:"errors"`
	// FirstErrors holds, by code name, the message of the first call that
	// failed with that code.
	FirstErrors map[string]string `json:"first_errors,omitempty"`
	// Sent counts the calls started in the window: Calls plus the failed
	// ones, plus any left unanswered when a stream broke.
	Sent uint64 `json:"sent"`
	// Retries counts the attempts made of calls after their first: over
	// raw TCP the retries of calls a server never processed and, unless
	// --retry=false, of those that failed UNAVAILABLE; over gRPC the
	// latter only (gRPC's own transparent retries are not seen).
	Retries uint64 `json:"retries"`

	// Latencies of the successful calls, in microseconds.
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
	// Percentiles is the latency distribution from p0 to p99.999, evenly
	// spaced on a log scale of 1/(1-p), for charts.
	Percentiles []Point `json:"percentiles"`

	// BytesPerCall is TCP payload bytes read plus written per call.
	BytesPerCall float64 `json:"bytes_per_call"`
	BytesRead    uint64  `json:"bytes_read"`
	BytesWritten uint64  `json:"bytes_written"`
	// ClientCPUUSPerCall is this process's CPU time per call;
	// ClientCPUPct is its CPU use in percent of one core.
	ClientCPUUSPerCall float64 `json:"client_cpu_us_per_call"`
	ClientCPUPct       float64 `json:"client_cpu_pct"`
	// The server figures are present when the server was probed
	// (--server-pid, --server-pprof).
	ServerCPUUSPerCall  *float64 `json:"server_cpu_us_per_call,omitempty"`
	ServerCPUPct        *float64 `json:"server_cpu_pct,omitempty"`
	ServerAllocsPerCall *float64 `json:"server_allocs_per_call,omitempty"`
}

// Micros converts d to microseconds.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// chartPoints is how many points per decade of 1/(1-p) Percentiles has, and
// chartDecades how many decades: p0 to p99.999.
const (
	chartPoints  = 10
	chartDecades = 5
)

// Fill sets r's measured fields from res. The server fields are set when
// cpu or allocs say that the server was probed for them.
func (r *Report) Fill(res *Result, cpu, allocs bool) {
	h := res.Latency
	r.DurationS = res.Elapsed.Seconds()
	r.Calls = res.Calls
	r.Sent = res.Sent
	r.Retries = res.Used.Retries
	if r.DurationS > 0 {
		r.CallsPerSec = float64(res.Calls) / r.DurationS
	}
	r.Errors = map[string]uint64{}
	for c, n := range res.Errors {
		r.Errors[wire.CodeName(c)] = n
	}
	r.FirstErrors = nil
	for c, msg := range res.FirstErrors {
		if r.FirstErrors == nil {
			r.FirstErrors = map[string]string{}
		}
		r.FirstErrors[wire.CodeName(c)] = msg
	}
	r.MeanUS, r.MaxUS = Micros(h.Mean()), Micros(h.Max())
	r.P50US, r.P90US, r.P99US, r.P999US = Micros(h.Percentile(50)), Micros(h.Percentile(90)), Micros(h.Percentile(99)), Micros(h.Percentile(99.9))
	r.Percentiles = r.Percentiles[:0]
	for i := 0; i <= chartPoints*chartDecades; i++ {
		p := 100 * (1 - math.Pow(10, -float64(i)/chartPoints))
		p = math.Round(p*1e6) / 1e6
		r.Percentiles = append(r.Percentiles, Point{P: p, US: Micros(h.Percentile(p))})
	}
	n := float64(res.Completed())
	u := res.Used
	r.BytesRead, r.BytesWritten = u.BytesRead, u.BytesWritten
	per := func(v float64) float64 {
		if n == 0 {
			return 0
		}
		return v / n
	}
	pct := func(d time.Duration) float64 {
		if res.Elapsed <= 0 {
			return 0
		}
		return 100 * d.Seconds() / res.Elapsed.Seconds()
	}
	r.BytesPerCall = per(float64(u.BytesRead + u.BytesWritten))
	r.ClientCPUUSPerCall, r.ClientCPUPct = per(Micros(u.CPU)), pct(u.CPU)
	r.ServerCPUUSPerCall, r.ServerCPUPct, r.ServerAllocsPerCall = nil, nil, nil
	if cpu {
		us, p := per(Micros(u.ServerCPU)), pct(u.ServerCPU)
		r.ServerCPUUSPerCall, r.ServerCPUPct = &us, &p
	}
	if allocs {
		a := per(float64(u.ServerMallocs))
		r.ServerAllocsPerCall = &a
	}
}

// FormatMicros formats a latency given in microseconds with three
// significant digits: "81.2µs", "1.25ms", "2.10s".
func FormatMicros(us float64) string {
	switch {
	case us < 1000:
		return sig3(us) + "µs"
	case us < 1e6:
		return sig3(us/1e3) + "ms"
	default:
		return sig3(us/1e6) + "s"
	}
}

// FormatCount formats v rounded to an integer with thousands separators:
// "1,234,567".
func FormatCount(v float64) string {
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// sig3 formats v with three significant digits.
func sig3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// ErrorSummary formats errors as "CODE n, CODE n" in code order, or "none".
func ErrorSummary(errors map[string]uint64) string {
	if len(errors) == 0 {
		return "none"
	}
	names := make([]string, 0, len(errors))
	for name := range errors {
		names = append(names, name)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, errors[name])
	}
	return strings.Join(parts, ", ")
}

// WriteText writes r for a person to read.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s: %d conns, concurrency %d, pipeline %d", r.Transport, r.Addr, r.RPC, r.Conns, r.Concurrency, r.Pipeline)
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", fixed rate %.0f calls/s", r.Rate)
	}
	fmt.Fprintf(&b, "\n  calls       %d in %.2fs: %.0f calls/s\n", r.Calls, r.DurationS, r.CallsPerSec)
	fmt.Fprintf(&b, "  errors      %s\n", ErrorSummary(r.Errors))
	names := make([]string, 0, len(r.FirstErrors))
	for name := range r.FirstErrors {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "    first %s: %s\n", name, r.FirstErrors[name])
	}
	fmt.Fprintf(&b, "  sent        %d calls, %d retries\n", r.Sent, r.Retries)
	fmt.Fprintf(&b, "  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
		FormatMicros(r.P50US), FormatMicros(r.P90US), FormatMicros(r.P99US), FormatMicros(r.P999US), FormatMicros(r.MaxUS), FormatMicros(r.MeanUS))
	fmt.Fprintf(&b, "  wire        %.1f bytes/call (%d read, %d written)\n", r.BytesPerCall, r.BytesRead, r.BytesWritten)
	fmt.Fprintf(&b, "  client CPU  %.2fµs/call, %.0f%% of one core\n", r.ClientCPUUSPerCall, r.ClientCPUPct)
	if r.ServerCPUUSPerCall != nil {
		fmt.Fprintf(&b, "  server CPU  %.2fµs/call, %.0f%% of one core\n", *r.ServerCPUUSPerCall, *r.ServerCPUPct)
	}
	if r.ServerAllocsPerCall != nil {
		fmt.Fprintf(&b, "  server heap %.2f allocs/call\n", *r.ServerAllocsPerCall)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
