// Command benchreport turns the raw results of scripts/bench.sh into
// RESULTS.md and SVG charts, and copies the summary into BENCHMARKS.md.
//
//	benchreport --dir bench/results --command 'scripts/bench.sh' [--benchmarks BENCHMARKS.md]
//
// It reads DIR/raw/SCENARIO/TRANSPORT-RUN.json (calc-bench or echofloor
// bench --json output; idle scenarios hold calc-bench --idle output) and
// DIR/profiles/*.txt (pprof -top output), takes the median of each figure
// over a scenario's runs, and writes DIR/RESULTS.md and
// DIR/charts/SCENARIO.svg. With --benchmarks it replaces the text between
// the markers <!-- results:begin --> and <!-- results:end --> of that file
// with the summary tables.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/calcrpc/calc/bench"
)

// scenario is one row of the tables: a load every transport runs.
type scenario struct {
	slug, title, meaning string
}

// scenarios are bench.sh's load scenarios, in table order.
var scenarios = []scenario{
	{"unary-c1", "unary c=1, 1 conn", "one caller, one call at a time: the round trip's latency"},
	{"unary-c16", "unary c=16, 1 conn", "16 callers multiplexed on one connection"},
	{"unary-c64", "unary c=64, 1 conn", "64 callers multiplexed on one connection"},
	{"unary-c64x8", "unary c=64, 8 conns", "64 callers spread over 8 connections"},
	{"stream-w128x4", "stream W=128, 4 conns", "one CalculateStream per connection with 128 calculations in flight (floor: 128 frames in flight)"},
}

// transports are the table's columns.
var transports = []string{"tcp", "grpc", "floor"}

// Markers delimit the generated part of BENCHMARKS.md.
const (
	beginMarker = "<!-- results:begin -->"
	endMarker   = "<!-- results:end -->"
)

func main() {
	dir := flag.String("dir", "bench/results", "results `directory`")
	command := flag.String("command", "scripts/bench.sh", "the command that produced the results, for the record")
	benchmarks := flag.String("benchmarks", "", "BENCHMARKS.md to copy the summary into")
	flag.Parse()
	if err := run(*dir, *command, *benchmarks); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// cell is one scenario and transport: its runs and their medians.
type cell struct {
	runs   []*bench.Report
	median *bench.Report // the run of median throughput, for the chart
}

// med returns the median of f over the runs; ok is false if no run has
// the figure.
func (c *cell) med(f func(*bench.Report) (float64, bool)) (v float64, ok bool) {
	var vs []float64
	for _, r := range c.runs {
		if v, ok := f(r); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// Field getters for cell.med.
func callsPerSec(r *bench.Report) (float64, bool)  { return r.CallsPerSec, true }
func p50(r *bench.Report) (float64, bool)          { return r.P50US, true }
func p99(r *bench.Report) (float64, bool)          { return r.P99US, true }
func p999(r *bench.Report) (float64, bool)         { return r.P999US, true }
func bytesPerCall(r *bench.Report) (float64, bool) { return r.BytesPerCall, true }
func clientCPU(r *bench.Report) (float64, bool)    { return r.ClientCPUUSPerCall, true }
func serverCPU(r *bench.Report) (float64, bool)    { return deref(r.ServerCPUUSPerCall) }
func serverAllocs(r *bench.Report) (float64, bool) { return deref(r.ServerAllocsPerCall) }

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// results is everything read from the raw directory.
type results struct {
	cells  map[string]map[string]*cell // scenario, transport
	idle   map[string][]*bench.IdleReport
	errors []string // runs with errors
}

// load reads dir/raw.
func load(dir string) (*results, error) {
	res := &results{cells: map[string]map[string]*cell{}, idle: map[string][]*bench.IdleReport{}}
	files, err := filepath.Glob(filepath.Join(dir, "raw", "*", "*.json"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		slug := filepath.Base(filepath.Dir(f))
		transport, _, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".json"), "-")
		if strings.HasPrefix(slug, "idle-") {
			var r bench.IdleReport
			if err := json.Unmarshal(data, &r); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			res.idle[slug] = append(res.idle[slug], &r)
			if len(r.Errors) > 0 {
				res.errors = append(res.errors, fmt.Sprintf("%s: %s", f, bench.ErrorSummary(r.Errors)))
			}
			continue
		}
		var r bench.Report
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if res.cells[slug] == nil {
			res.cells[slug] = map[string]*cell{}
		}
		c := res.cells[slug][transport]
		if c == nil {
			c = &cell{}
			res.cells[slug][transport] = c
		}
		c.runs = append(c.runs, &r)
		if len(r.Errors) > 0 {
			res.errors = append(res.errors, fmt.Sprintf("%s: %s", f, bench.ErrorSummary(r.Errors)))
		}
	}
	for _, byTransport := range res.cells {
		for _, c := range byTransport {
			runs := slices.Clone(c.runs)
			slices.SortFunc(runs, func(a, b *bench.Report) int { return cmp.Compare(a.CallsPerSec, b.CallsPerSec) })
			c.median = runs[len(runs)/2]
		}
	}
	return res, nil
}

// get returns the median of f for a scenario and transport.
func (r *results) get(slug, transport string, f func(*bench.Report) (float64, bool)) (float64, bool) {
	c := r.cells[slug][transport]
	if c == nil {
		return 0, false
	}
	return c.med(f)
}

// fmtRate formats calls/s with thousands separators.
func fmtRate(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return bench.FormatCount(v)
}

func fmtUS(v float64, ok bool) string {
	if !ok {
		return "–"
	}
	return bench.FormatMicros(v)
}

func fmtNum(format string) func(float64, bool) string {
	return func(v float64, ok bool) string {
		if !ok {
			return "–"
		}
		return fmt.Sprintf(format, v)
	}
}

// ratio formats a/b as "2.51×".
func ratio(a float64, aok bool, b float64, bok bool) string {
	if !aok || !bok || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// summary writes the tables BENCHMARKS.md copies.
func (r *results) summary(b *bytes.Buffer) {
	b.WriteString("| scenario | tcp calls/s | grpc calls/s | floor calls/s | tcp/grpc | p50 tcp | p50 grpc | p50 floor |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range scenarios {
		t, tok := r.get(s.slug, "tcp", callsPerSec)
		g, gok := r.get(s.slug, "grpc", callsPerSec)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.title, fmtRate(t, tok), fmtRate(g, gok),
			fmtRate(r.get(s.slug, "floor", callsPerSec)), ratio(t, tok, g, gok),
			fmtUS(r.get(s.slug, "tcp", p50)), fmtUS(r.get(s.slug, "grpc", p50)), fmtUS(r.get(s.slug, "floor", p50)))
	}
	b.WriteString("\nTails:\n\n| scenario | p99 tcp | p99 grpc | p99 floor | p99.9 tcp | p99.9 grpc | p99.9 floor |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range scenarios {
		fmt.Fprintf(b, "| %s |", s.title)
		for _, f := range []func(*bench.Report) (float64, bool){p99, p999} {
			for _, tr := range transports {
				fmt.Fprintf(b, " %s |", fmtUS(r.get(s.slug, tr, f)))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nCost per call (wire bytes: TCP payload both ways; CPU: user+sys; allocs: the server's heap allocations, runtime.MemStats.Mallocs, which include its background allocations, a few hundredths per call):\n\n")
	b.WriteString("| scenario | wire B tcp | wire B grpc | wire B floor | client CPU µs tcp | grpc | floor | server CPU µs tcp | grpc | floor | server allocs tcp | grpc |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	one, two := fmtNum("%.1f"), fmtNum("%.2f")
	for _, s := range scenarios {
		fmt.Fprintf(b, "| %s |", s.title)
		for _, tr := range transports {
			fmt.Fprintf(b, " %s |", one(r.get(s.slug, tr, bytesPerCall)))
		}
		for _, tr := range transports {
			fmt.Fprintf(b, " %s |", two(r.get(s.slug, tr, clientCPU)))
		}
		for _, tr := range transports {
			fmt.Fprintf(b, " %s |", two(r.get(s.slug, tr, serverCPU)))
		}
		for _, tr := range transports[:2] {
			fmt.Fprintf(b, " %s |", two(r.get(s.slug, tr, serverAllocs)))
		}
		b.WriteString("\n")
	}
	if len(r.idle) > 0 {
		b.WriteString("\nIdle raw TCP connections (calc bench --idle: one Calculate call each, then idle):\n\n")
		b.WriteString("| connections | opened | server RSS before | server RSS after | RSS per connection |\n|---:|---:|---:|---:|---:|\n")
		for _, slug := range sortedKeys(r.idle) {
			for _, ir := range r.idle[slug] {
				fmt.Fprintf(b, "| %s | %s | %.1f MiB | %.1f MiB | %.0f B (%.2f KiB) |\n", fmtRate(float64(ir.Requested), true), fmtRate(float64(ir.Conns), true),
					float64(ir.RSSBeforeBytes)/(1<<20), float64(ir.RSSAfterBytes)/(1<<20), ir.RSSPerConnBytes, ir.RSSPerConnBytes/1024)
			}
		}
	}
	b.WriteString("\nTargets:\n\n| target | measured | holds |\n|---|---|---|\n")
	for _, t := range r.targets() {
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.name, t.measured, t.verdict)
	}
	if len(r.errors) > 0 {
		b.WriteString("\nRuns with errors:\n\n")
		for _, e := range r.errors {
			fmt.Fprintf(b, "- %s\n", e)
		}
	}
}

// target is one of the goals the results are checked against.
type target struct {
	name, measured, verdict string
}

// verdict says whether a target holds, or that it was not measured.
func verdict(ok, measured bool) string {
	switch {
	case !measured:
		return "not measured"
	case ok:
		return "yes"
	}
	return "**no**"
}

// targets checks the results against the goals.
func (r *results) targets() []target {
	var ts []target
	t1, ok1 := r.get("unary-c1", "tcp", callsPerSec)
	g1, okg1 := r.get("unary-c1", "grpc", callsPerSec)
	ts = append(ts, target{"unary c=1: tcp ≥ 2.5× grpc calls/s", ratio(t1, ok1, g1, okg1), verdict(okg1 && t1 >= 2.5*g1, ok1 && okg1)})
	tp, okp := r.get("unary-c1", "tcp", p50)
	fp, okf := r.get("unary-c1", "floor", p50)
	ts = append(ts, target{"unary c=1: tcp p50 ≤ 1.5× floor p50", fmt.Sprintf("%s vs %s: %s", fmtUS(tp, okp), fmtUS(fp, okf), ratio(tp, okp, fp, okf)), verdict(tp <= 1.5*fp, okp && okf)})
	t64, ok64 := r.get("unary-c64", "tcp", callsPerSec)
	g64, okg64 := r.get("unary-c64", "grpc", callsPerSec)
	ts = append(ts, target{"unary c=64, 1 conn: tcp ≥ 8× grpc calls/s", ratio(t64, ok64, g64, okg64), verdict(t64 >= 8*g64, ok64 && okg64)})
	ts1, oks := r.get("stream-w128x4", "tcp", callsPerSec)
	ts = append(ts, target{"pipelined/streaming ≥ 1,000,000 calculations/s (tcp)", fmtRate(ts1, oks) + "/s", verdict(ts1 >= 1e6, oks)})
	var rss float64
	idleOK, held, tried := false, 0, 0
	for _, runs := range r.idle {
		for _, ir := range runs {
			rss, idleOK = max(rss, ir.RSSPerConnBytes), true
			tried = max(tried, ir.Requested)
			if len(ir.Errors) == 0 {
				held = max(held, ir.Conns)
			}
		}
	}
	ts = append(ts, target{"≤ 4 KiB server RSS per idle connection", fmt.Sprintf("%.0f B (worst of the idle runs)", rss), verdict(rss <= 4096, idleOK)})
	heldNote := fmtRate(float64(held), true) + " held"
	if tried < 100000 {
		heldNote += " in the largest run (100,000 needs a hard open-file limit above it)"
	}
	ts = append(ts, target{"100,000 idle connections held by one calcd", heldNote, verdict(held >= 100000, tried >= 100000)})
	wb, okw := r.get("unary-c1", "tcp", bytesPerCall)
	ts = append(ts, target{"≤ 40 bytes on the wire per Calculate round trip (tcp)", fmt.Sprintf("%.1f B", wb), verdict(wb <= 40, okw)})
	worst, where, okA := 0.0, "", false
	for _, s := range scenarios[:4] {
		if a, ok := r.get(s.slug, "tcp", serverAllocs); ok && (!okA || a > worst) {
			worst, where, okA = a, s.title, true
		}
	}
	// Rounded to one decimal: the count includes the server's background
	// allocations, a few hundredths per call.
	ts = append(ts, target{"≤ 5 server allocations per raw TCP unary call", fmt.Sprintf("%.2f (worst: %s; judged to one decimal)", worst, where),
		verdict(math.Round(worst*10)/10 <= 5, okA)})
	return ts
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// cpuModel returns the CPU model name from /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// charts writes one chart per scenario and returns their paths relative to
// dir.
func (r *results) charts(dir string) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "charts"), 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, s := range scenarios {
		var series []bench.Series
		var sub string
		for _, tr := range transports {
			c := r.cells[s.slug][tr]
			if c == nil {
				continue
			}
			series = append(series, c.median.Series(tr))
			sub = fmt.Sprintf("%d× %.0fs runs per transport; each line is the run of median throughput", len(c.runs), c.median.DurationS)
		}
		if len(series) == 0 {
			continue
		}
		var b bytes.Buffer
		if err := bench.WriteChart(&b, s.title, sub, series); err != nil {
			return nil, err
		}
		rel := filepath.Join("charts", s.slug+".svg")
		if err := os.WriteFile(filepath.Join(dir, rel), b.Bytes(), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, rel)
	}
	return paths, nil
}

func run(dir, command, benchmarks string) error {
	res, err := load(dir)
	if err != nil {
		return err
	}
	if len(res.cells) == 0 {
		return fmt.Errorf("no results under %s/raw", dir)
	}
	charts, err := res.charts(dir)
	if err != nil {
		return err
	}
	var sum bytes.Buffer
	res.summary(&sum)

	var b bytes.Buffer
	b.WriteString("# calc benchmark results\n\n")
	fmt.Fprintf(&b, "- date: %s\n- machine: %d CPUs (nproc), %s\n- go: %s\n- command: `%s`\n", time.Now().UTC().Format(time.RFC3339),
		runtime.NumCPU(), cpuModel(), runtime.Version(), command)
	b.WriteString("- each figure is the median of the runs of a scenario; transports run interleaved (tcp, grpc, floor, tcp, …) against one calcd and one echo floor, client and servers on the same machine over loopback\n\n")
	b.WriteString("Scenarios:\n\n")
	for _, s := range scenarios {
		fmt.Fprintf(&b, "- **%s**: %s\n", s.title, s.meaning)
	}
	b.WriteString("\n## Summary\n\n")
	b.Write(sum.Bytes())
	b.WriteString("\n## Charts\n\nLatency percentiles per scenario (log–log; the tail is on the right):\n\n")
	for _, c := range charts {
		fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(filepath.Base(c), ".svg"), filepath.ToSlash(c))
	}
	profiles, err := filepath.Glob(filepath.Join(dir, "profiles", "*.txt"))
	if err != nil {
		return err
	}
	if len(profiles) > 0 {
		b.WriteString("## Server CPU profiles\n\n")
		for _, p := range profiles {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "`%s`:\n\n```\n%s```\n\n", filepath.ToSlash(strings.TrimPrefix(p, dir+string(filepath.Separator))), data)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), b.Bytes(), 0o644); err != nil {
		return err
	}
	if benchmarks == "" {
		return nil
	}
	return splice(benchmarks, sum.Bytes())
}

// splice replaces the text between the markers of file with text.
func splice(file string, text []byte) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	i, j := bytes.Index(data, []byte(beginMarker)), bytes.Index(data, []byte(endMarker))
	if i < 0 || j < i {
		return errors.New(file + " lacks the " + beginMarker + " … " + endMarker + " markers")
	}
	var out bytes.Buffer
	out.Write(data[:i+len(beginMarker)])
	out.WriteString("\n")
	out.Write(text)
	out.Write(data[j:])
	return os.WriteFile(file, out.Bytes(), 0o644)
}
