package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/calcrpc/calc/bench"
)

// costMeta is the first record of a results file of scripts/bench-tls.sh or
// scripts/bench-observability.sh: which script, the machine, the commit,
// the command and the load's settings.
type costMeta struct {
	Script string `json:"script"` // "tls" or "observability"
	runMeta
	DurationS   float64 `json:"duration_s"`
	Runs        int     `json:"runs"`
	Concurrency int     `json:"concurrency"` // observability: the callers
	Rate        float64 `json:"rate"`        // observability: calls/s of an open loop; 0 for a closed one
	Pin         string  `json:"pin"`         // observability: split or free
	Go          string  `json:"go"`
}

// costRun is one load of such a file: run number, callers (bench-tls.sh
// measures two counts), variant, calls/s and, from bench-observability.sh,
// the server's CPU per call.
type costRun struct {
	Run         int     `json:"run"`
	Callers     int     `json:"callers"`
	Variant     string  `json:"variant"`
	CallsPerSec float64 `json:"calls_per_sec"`
	ServerCPUUS float64 `json:"server_cpu_us"`
}

// costResults is a results file read.
type costResults struct {
	meta    costMeta
	loadEnd string
	runs    []costRun
}

// loadCost reads a results file of bench-tls.sh or bench-observability.sh
// (JSON lines: a "meta" record, "run" records, an "end" record).
func loadCost(file string) (*costResults, error) {
	res := &costResults{}
	var err error
	res.loadEnd, err = readResults(file,
		func(line []byte) error { return json.Unmarshal(line, &res.meta) },
		func(line []byte) error {
			var r costRun
			err := json.Unmarshal(line, &r)
			res.runs = append(res.runs, r)
			return err
		})
	if err != nil {
		return nil, err
	}
	if len(res.runs) == 0 {
		return nil, fmt.Errorf("%s: no runs", file)
	}
	switch res.meta.Script {
	case "tls", "observability":
	default:
		return nil, fmt.Errorf("%s: script %q in the meta record: want tls or observability", file, res.meta.Script)
	}
	return res, nil
}

// markers returns the BENCHMARKS.md markers the file's tables go between:
// one pair for TLS, and for observability one for the closed loop and one
// for the open loop at a fixed rate.
func (res *costResults) markers() (begin, end string) {
	name := res.meta.Script
	if name == "observability" {
		name += "-closed"
		if res.meta.Rate > 0 {
			name = "observability-rate"
		}
	}
	return "<!-- " + name + ":begin -->", "<!-- " + name + ":end -->"
}

// caption is the line above the table: the machine, the commit, the
// command, the load average.
func (res *costResults) caption() string {
	m := res.meta
	commit, load := commitLoad(m.Commit, m.Dirty, m.LoadStart, res.loadEnd)
	return fmt.Sprintf("_%d CPUs (%s), %s; %s; commit %s; `%s`; %d run%s of %g s each after 1 s of warm-up, interleaved%s; client and servers on this one machine, over loopback._\n\n",
		m.NProc, m.CPUModel, m.Go, m.Date, commit, m.Command, m.Runs, plural(m.Runs), m.DurationS, load)
}

// find returns the load of run, callers and variant, or nil.
func (res *costResults) find(run, callers int, variant string) *costRun {
	for i := range res.runs {
		r := &res.runs[i]
		if r.Run == run && r.Callers == callers && r.Variant == variant {
			return r
		}
	}
	return nil
}

// runsAndCallers returns the run numbers and the caller counts of the loads,
// ascending.
func (res *costResults) runsAndCallers() (runs, callers []int) {
	for _, r := range res.runs {
		if !slices.Contains(runs, r.Run) {
			runs = append(runs, r.Run)
		}
		if !slices.Contains(callers, r.Callers) {
			callers = append(callers, r.Callers)
		}
	}
	slices.Sort(runs)
	slices.Sort(callers)
	return runs, callers
}

// costRatio returns a's field over b's, and whether both exist and b's is not 0.
func costRatio(a, b *costRun, field func(*costRun) float64) (float64, bool) {
	if a == nil || b == nil || field(b) == 0 {
		return 0, false
	}
	return field(a) / field(b), true
}

func costCalls(r *costRun) float64 { return r.CallsPerSec }
func costCPU(r *costRun) float64   { return r.ServerCPUUS }

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// tlsTable writes bench-tls.sh's table: each run's calls/s on both
// transports, plaintext and TLS, with the ratios, then the range of
// tcp+TLS / grpc+TLS per caller count.
func (res *costResults) tlsTable(b *bytes.Buffer) {
	b.WriteString(res.caption())
	b.WriteString("| callers | run | tcp | grpc | tcp + TLS | grpc + TLS | TLS/plain tcp | TLS/plain grpc | tcp+TLS / grpc+TLS |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	runs, callers := res.runsAndCallers()
	cell := func(r *costRun) string {
		if r == nil {
			return "–"
		}
		return bench.FormatCount(r.CallsPerSec)
	}
	rat := func(a, b *costRun, format string) string {
		if x, ok := costRatio(a, b, costCalls); ok {
			return fmt.Sprintf(format, x)
		}
		return "–"
	}
	var summary []string
	for _, c := range callers {
		var over []float64
		for _, n := range runs {
			tp, gp, tt, gt := res.find(n, c, "tcp"), res.find(n, c, "grpc"), res.find(n, c, "tcp+tls"), res.find(n, c, "grpc+tls")
			if tp == nil && gp == nil && tt == nil && gt == nil {
				continue
			}
			fmt.Fprintf(b, "| %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", c, n, cell(tp), cell(gp), cell(tt), cell(gt),
				rat(tt, tp, "%.2f"), rat(gt, gp, "%.2f"), rat(tt, gt, "%.2f×"))
			if x, ok := costRatio(tt, gt, costCalls); ok {
				over = append(over, x)
			}
		}
		if len(over) > 0 {
			summary = append(summary, fmt.Sprintf("%.2f–%.2f× at %d caller%s", slices.Min(over), slices.Max(over), c, plural(c)))
		}
	}
	if len(summary) > 0 {
		fmt.Fprintf(b, "\nRaw TCP + TLS against gRPC + TLS, lowest–highest run: %s.\n", strings.Join(summary, ", "))
	}
}

// observabilityVariants are bench-observability.sh's variants, in its
// order; plain is the one the others are divided by.
var observabilityVariants = []string{"plain", "traced-unsampled", "+client", "metrics"}

// observabilityTable writes bench-observability.sh's table: each run's
// calls/s and server CPU per call for every variant, then the medians of
// the per-run ratios against plain, of calls/s and of CPU per call.
func (res *costResults) observabilityTable(b *bytes.Buffer) {
	m := res.meta
	b.WriteString(res.caption())
	load := "closed loop"
	if m.Rate > 0 {
		load = "open loop at " + bench.FormatCount(m.Rate) + " calls/s"
	}
	fmt.Fprintf(b, "Raw TCP, unary, 1 connection, %d callers, %s, placement %s; each cell: calls/s (server CPU µs per call).\n\n", m.Concurrency, load, m.Pin)
	b.WriteString("| run |")
	for _, v := range observabilityVariants {
		fmt.Fprintf(b, " %s |", v)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(observabilityVariants)) + "\n")
	runs, _ := res.runsAndCallers()
	rateRatios := map[string][]float64{}
	cpuRatios := map[string][]float64{}
	for _, n := range runs {
		fmt.Fprintf(b, "| %d |", n)
		plain := res.find(n, 0, "plain")
		for _, v := range observabilityVariants {
			r := res.find(n, 0, v)
			if r == nil {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(b, " %s (%.2f) |", bench.FormatCount(r.CallsPerSec), r.ServerCPUUS)
			if v == "plain" {
				continue
			}
			if x, ok := costRatio(r, plain, costCalls); ok {
				rateRatios[v] = append(rateRatios[v], x)
			}
			if x, ok := costRatio(r, plain, costCPU); ok {
				cpuRatios[v] = append(cpuRatios[v], x)
			}
		}
		b.WriteString("\n")
	}
	var rates, cpus []string
	for _, v := range observabilityVariants[1:] {
		if xs := rateRatios[v]; len(xs) > 0 {
			rates = append(rates, fmt.Sprintf("%s %.3f (%.2f–%.2f)", v, median(xs), slices.Min(xs), slices.Max(xs)))
		}
		if xs := cpuRatios[v]; len(xs) > 0 {
			cpus = append(cpus, fmt.Sprintf("%s %+.1f%%", v, (median(xs)-1)*100))
		}
	}
	fmt.Fprintf(b, "\nMedians of the per-run ratios against plain: calls/s %s; server CPU per call %s.\n", strings.Join(rates, ", "), strings.Join(cpus, ", "))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// runCost writes the table of a bench-tls.sh or bench-observability.sh
// results file into benchmarks between its markers, or on stdout if
// benchmarks is "".
func runCost(file, benchmarks string) error {
	res, err := loadCost(file)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if res.meta.Script == "tls" {
		res.tlsTable(&b)
	} else {
		res.observabilityTable(&b)
	}
	fmt.Fprintf(&b, "\nRaw results: [`%s`](%s); regenerate the table with `go run ./bench/cmd/benchreport --cost %s --benchmarks BENCHMARKS.md`.\n", file, file, file)
	if benchmarks == "" {
		_, err := os.Stdout.Write(b.Bytes())
		return err
	}
	begin, end := res.markers()
	return spliceBetween(benchmarks, begin, end, b.Bytes())
}
