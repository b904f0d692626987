package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/calcrpc/calc/bench"
)

// Markers delimit the generated part of BENCHMARKS.md's "Every language"
// section.
const (
	langsBeginMarker = "<!-- langs:begin -->"
	langsEndMarker   = "<!-- langs:end -->"
)

// langMeta is the first record of a scripts/bench-langs.sh results file:
// the machine, the commit and the command.
type langMeta struct {
	runMeta
	DurationS   float64  `json:"duration_s"`
	WarmupS     float64  `json:"warmup_s"`
	Concurrency []int    `json:"concurrency"`
	Langs       []string `json:"langs"`
	Calcd       string   `json:"calcd"`
}

// langRun is one load client's run: its JSON line (the contract every
// client/LANG/run-bench.sh honours, and calc-bench's report converted to it)
// and what bench-langs.sh adds.
type langRun struct {
	Lang        string  `json:"lang"`
	Transport   string  `json:"transport"`
	Concurrency int     `json:"concurrency"`
	Calls       uint64  `json:"calls"`
	Errors      uint64  `json:"errors"`
	Seconds     float64 `json:"seconds"`
	CallsPerSec float64 `json:"calls_per_sec"`
	P50US       float64 `json:"p50_us"`
	P99US       float64 `json:"p99_us"`
	FirstError  string  `json:"first_error"`
	// CalcdCPUS is calcd's CPU time over the client's whole run, warm-up
	// and start-up included; WallS that run's wall time.
	CalcdCPUS float64 `json:"calcd_cpu_s"`
	WallS     float64 `json:"wall_s"`
	Exit      int     `json:"exit"`
}

// ok says whether the run counts: it exited 0, made calls and had no error.
func (r *langRun) ok() bool { return r.Exit == 0 && r.Errors == 0 && r.Calls > 0 }

// langResults is a results file read.
type langResults struct {
	meta    langMeta
	loadEnd string
	runs    []*langRun
}

// langNames are the tables' names for the languages, with the clients each
// uses over raw TCP and over gRPC.
var langNames = map[string]struct{ name, tcp, grpc string }{
	"go":     {"Go", "calc-bench: `tcpconn`", "calc-bench: grpc-go"},
	"java":   {"Java", "`TcpChannel`, async stub", "grpc-java (Netty), async stub"},
	"python": {"Python", "asyncio `TcpChannel`", "`GrpcClient` (grpc.aio)"},
	"node":   {"Node", "`createTcpTransport`", "connect-node gRPC transport"},
	"cpp":    {"C++", "`calc::TcpClient`", "grpc++"},
}

// loadLangs reads a scripts/bench-langs.sh results file (JSON lines: a
// "meta" record, "run" records, an "end" record).
func loadLangs(file string) (*langResults, error) {
	res := &langResults{}
	var err error
	res.loadEnd, err = readResults(file,
		func(line []byte) error { return json.Unmarshal(line, &res.meta) },
		func(line []byte) error {
			var r langRun
			res.runs = append(res.runs, &r)
			return json.Unmarshal(line, &r)
		})
	if err != nil {
		return nil, err
	}
	if len(res.runs) == 0 {
		return nil, fmt.Errorf("%s: no runs", file)
	}
	return res, nil
}

// langOrder returns the languages of the runs, in the meta record's order
// and then in the order they appear.
func (res *langResults) langOrder() []string {
	var order []string
	for _, l := range res.meta.Langs {
		if !slices.Contains(order, l) {
			order = append(order, l)
		}
	}
	for _, r := range res.runs {
		if !slices.Contains(order, r.Lang) {
			order = append(order, r.Lang)
		}
	}
	return order
}

// point returns the successful run of lang, transport and concurrency c
// (the one of median calls/s if there are several), or nil.
func (res *langResults) point(lang, transport string, c int) *langRun {
	var rs []*langRun
	for _, r := range res.runs {
		if r.Lang == lang && r.Transport == transport && r.Concurrency == c && r.ok() {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b *langRun) int { return cmp.Compare(a.CallsPerSec, b.CallsPerSec) })
	return rs[len(rs)/2]
}

// concurrencies returns every concurrency of the runs, ascending.
func (res *langResults) concurrencies() []int {
	var cs []int
	for _, r := range res.runs {
		if !slices.Contains(cs, r.Concurrency) {
			cs = append(cs, r.Concurrency)
		}
	}
	slices.Sort(cs)
	return cs
}

// best returns the successful run of lang and transport with the most
// calls/s over the concurrencies, or nil.
func (res *langResults) best(lang, transport string) *langRun {
	var b *langRun
	for _, c := range res.concurrencies() {
		if r := res.point(lang, transport, c); r != nil && (b == nil || r.CallsPerSec > b.CallsPerSec) {
			b = r
		}
	}
	return b
}

// caption is the line above each table: the machine, the commit, the
// command, the load average.
func (res *langResults) caption() string {
	m := res.meta
	commit, load := commitLoad(m.Commit, m.Dirty, m.LoadStart, res.loadEnd)
	return fmt.Sprintf("_%d CPUs (%s); %s; commit %s; `%s`; %g s per point after %g s of warm-up%s; %s; every client and calcd on this one machine, over loopback._\n\n",
		m.NProc, m.CPUModel, m.Date, commit, m.Command, m.DurationS, m.WarmupS, load, m.Calcd)
}

// langsTable writes the "Every language" tables: the summary per language
// and transport, then every point.
func (res *langResults) langsTable(b *bytes.Buffer, source string) {
	capt := res.caption()
	b.WriteString("Unary `Calculate` on one connection, N calls outstanding; \"best\" is the concurrency of the most calls/s; \"tcp ÷ grpc\" divides raw TCP's calls/s by gRPC's, at c=1 and each at its best. A run that failed is left out and listed below.\n\n")
	b.WriteString(capt)
	b.WriteString("| language | transport | client | c=1 calls/s | c=1 p50 | best calls/s | at c= | p99 at best | tcp ÷ grpc, c=1 | tcp ÷ grpc, best |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, lang := range res.langOrder() {
		names, known := langNames[lang]
		if !known {
			names.name = lang
		}
		for _, tr := range []string{"tcp", "grpc"} {
			client := names.tcp
			if tr == "grpc" {
				client = names.grpc
			}
			one, best := res.point(lang, tr, 1), res.best(lang, tr)
			r1, p50 := "–", "–"
			if one != nil {
				r1, p50 = bench.FormatCount(one.CallsPerSec), bench.FormatMicros(one.P50US)
			}
			rb, cb, p99 := "–", "–", "–"
			if best != nil {
				rb, cb, p99 = bench.FormatCount(best.CallsPerSec), fmt.Sprint(best.Concurrency), bench.FormatMicros(best.P99US)
			}
			ratio1, ratioB := "", ""
			if tr == "tcp" {
				g1, gb := res.point(lang, "grpc", 1), res.best(lang, "grpc")
				ratio1, ratioB = runRatio(one, g1), runRatio(best, gb)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", names.name, tr, client, r1, p50, rb, cb, p99, ratio1, ratioB)
		}
	}

	cs := res.concurrencies()
	b.WriteString("\nEvery point: calls/s, p50 / p99, and calcd's CPU seconds over the client's whole run (warm-up and start-up included).\n\n")
	b.WriteString(capt)
	b.WriteString("| language | transport |")
	for _, c := range cs {
		fmt.Fprintf(b, " c=%d |", c)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---:|", len(cs)) + "\n")
	for _, lang := range res.langOrder() {
		name := lang
		if n, ok := langNames[lang]; ok {
			name = n.name
		}
		for _, tr := range []string{"tcp", "grpc"} {
			fmt.Fprintf(b, "| %s | %s |", name, tr)
			for _, c := range cs {
				r := res.point(lang, tr, c)
				if r == nil {
					b.WriteString(" – |")
					continue
				}
				fmt.Fprintf(b, " %s/s, %s / %s, calcd %.1f s |", bench.FormatCount(r.CallsPerSec), bench.FormatMicros(r.P50US), bench.FormatMicros(r.P99US), r.CalcdCPUS)
			}
			b.WriteString("\n")
		}
	}
	var failed []string
	for _, r := range res.runs {
		if !r.ok() {
			why := fmt.Sprintf("exit %d, %d calls, %d errors", r.Exit, r.Calls, r.Errors)
			if r.FirstError != "" {
				why += ": " + r.FirstError
			}
			failed = append(failed, fmt.Sprintf("- %s %s c=%d: %s\n", r.Lang, r.Transport, r.Concurrency, why))
		}
	}
	if len(failed) > 0 {
		b.WriteString("\nFailed runs:\n\n")
		for _, f := range failed {
			b.WriteString(f)
		}
	}
	fmt.Fprintf(b, "\nRaw results: [`%s`](%s); regenerate the tables with `go run ./bench/cmd/benchreport --langs %s --benchmarks BENCHMARKS.md`.\n", source, source, source)
}

// runRatio formats a's calls/s divided by b's: "2.51×", or "–".
func runRatio(a, b *langRun) string {
	if a == nil || b == nil || b.CallsPerSec == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a.CallsPerSec/b.CallsPerSec)
}

// runLangs writes the tables of a bench-langs.sh results file into
// benchmarks between the langs markers, or on stdout if benchmarks is "".
func runLangs(file, benchmarks string) error {
	res, err := loadLangs(file)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	res.langsTable(&b, file)
	if benchmarks == "" {
		_, err := os.Stdout.Write(b.Bytes())
		return err
	}
	return spliceBetween(benchmarks, langsBeginMarker, langsEndMarker, b.Bytes())
}
