package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tlsFile is a bench-tls.sh results file: two runs at 1 caller, one at 64,
// whose grpc+tls load is missing.
const tlsFile = `{"kind":"meta","script":"tls","date":"2027-01-02T03:04:05Z","commit":"0123456789abcdef0123","dirty":false,"nproc":2,"cpu_model":"AMD EPYC","load_start":"1.00 2.00 3.00","command":"BENCH_DURATION=3 BENCH_RUNS=2 scripts/bench-tls.sh","go":"go1.26.8","duration_s":3,"runs":2}
{"kind":"run","callers":1,"run":1,"variant":"tcp","calls_per_sec":12000}
{"kind":"run","callers":1,"run":1,"variant":"grpc","calls_per_sec":4000}
{"kind":"run","callers":1,"run":1,"variant":"tcp+tls","calls_per_sec":10000}
{"kind":"run","callers":1,"run":1,"variant":"grpc+tls","calls_per_sec":4000}
{"kind":"run","callers":1,"run":2,"variant":"tcp","calls_per_sec":11000}
{"kind":"run","callers":1,"run":2,"variant":"grpc","calls_per_sec":4400}
{"kind":"run","callers":1,"run":2,"variant":"tcp+tls","calls_per_sec":9000}
{"kind":"run","callers":1,"run":2,"variant":"grpc+tls","calls_per_sec":3600}
{"kind":"run","callers":64,"run":1,"variant":"tcp","calls_per_sec":250000}
{"kind":"run","callers":64,"run":1,"variant":"grpc","calls_per_sec":25000}
{"kind":"run","callers":64,"run":1,"variant":"tcp+tls","calls_per_sec":150000}
{"kind":"end","load_end":"4.00 5.00 6.00"}
`

// obsFile is a bench-observability.sh results file: an open loop at a
// fixed rate, three runs.
const obsFile = `{"kind":"meta","script":"observability","date":"2027-01-02T03:04:05Z","commit":"0123456789abcdef0123","dirty":true,"nproc":2,"cpu_model":"AMD EPYC","load_start":"0.00 0.10 0.20","command":"BENCH_RATE=150000 scripts/bench-observability.sh","go":"go1.26.8","duration_s":5,"runs":3,"concurrency":64,"rate":150000,"pin":"split"}
{"kind":"run","run":1,"variant":"plain","calls_per_sec":150000,"server_cpu_us":5.0}
{"kind":"run","run":1,"variant":"traced-unsampled","calls_per_sec":150000,"server_cpu_us":5.1}
{"kind":"run","run":1,"variant":"+client","calls_per_sec":149000,"server_cpu_us":6.0}
{"kind":"run","run":1,"variant":"metrics","calls_per_sec":150000,"server_cpu_us":5.2}
{"kind":"run","run":2,"variant":"plain","calls_per_sec":150000,"server_cpu_us":4.0}
{"kind":"run","run":2,"variant":"traced-unsampled","calls_per_sec":150000,"server_cpu_us":4.0}
{"kind":"run","run":2,"variant":"+client","calls_per_sec":150000,"server_cpu_us":5.0}
{"kind":"run","run":2,"variant":"metrics","calls_per_sec":150000,"server_cpu_us":4.4}
{"kind":"run","run":3,"variant":"plain","calls_per_sec":150000,"server_cpu_us":5.0}
{"kind":"run","run":3,"variant":"traced-unsampled","calls_per_sec":150000,"server_cpu_us":5.05}
{"kind":"run","run":3,"variant":"+client","calls_per_sec":120000,"server_cpu_us":5.5}
{"kind":"run","run":3,"variant":"metrics","calls_per_sec":150000,"server_cpu_us":5.0}
{"kind":"end","load_end":"1.00 1.10 1.20"}
`

func TestCost(t *testing.T) {
	dir := t.TempDir()
	tlsRaw, obsRaw := filepath.Join(dir, "tls.jsonl"), filepath.Join(dir, "obs.jsonl")
	for file, text := range map[string]string{tlsRaw: tlsFile, obsRaw: obsFile} {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	md := filepath.Join(dir, "BENCHMARKS.md")
	doc := "intro\n<!-- tls:begin -->\nold\n<!-- tls:end -->\nmiddle\n<!-- observability-closed:begin -->\nkeep closed\n<!-- observability-closed:end -->\n<!-- observability-rate:begin -->\nold rate\n<!-- observability-rate:end -->\noutro\n"
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{tlsRaw, obsRaw} {
		if err := runCost(raw, md); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	for _, want := range []string{
		"intro\n<!-- tls:begin -->\n", "\n<!-- tls:end -->\nmiddle\n", "keep closed", "\noutro\n",
		"_2 CPUs (AMD EPYC), go1.26.8; 2027-01-02T03:04:05Z; commit 0123456789ab; `BENCH_DURATION=3 BENCH_RUNS=2 scripts/bench-tls.sh`; 2 runs of 3 s each",
		"load average (1, 5, 15 min) 1.00 2.00 3.00 at the start, 4.00 5.00 6.00 at the end",
		"| 1 | 1 | 12,000 | 4,000 | 10,000 | 4,000 | 0.83 | 1.00 | 2.50× |",
		"| 1 | 2 | 11,000 | 4,400 | 9,000 | 3,600 | 0.82 | 0.82 | 2.50× |",
		"| 64 | 1 | 250,000 | 25,000 | 150,000 | – | 0.60 | – | – |",
		"lowest–highest run: 2.50–2.50× at 1 caller.",
		"commit 0123456789ab+dirty; `BENCH_RATE=150000 scripts/bench-observability.sh`; 3 runs of 5 s",
		"64 callers, open loop at 150,000 calls/s, placement split",
		"| 1 | 150,000 (5.00) | 150,000 (5.10) | 149,000 (6.00) | 150,000 (5.20) |",
		"| 3 | 150,000 (5.00) | 150,000 (5.05) | 120,000 (5.50) | 150,000 (5.00) |",
		// CPU ratios: traced 1.02, 1.00, 1.01 -> +1.0%; +client 1.2, 1.25, 1.1 -> +20.0%; metrics 1.04, 1.1, 1.0 -> +4.0%.
		"server CPU per call traced-unsampled +1.0%, +client +20.0%, metrics +4.0%.",
		"calls/s traced-unsampled 1.000 (1.00–1.00), +client 0.993 (0.80–1.00), metrics 1.000 (1.00–1.00)",
		"--cost " + obsRaw + " --benchmarks BENCHMARKS.md",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old rate") || strings.Contains(got, "\nold\n") {
		t.Errorf("the old tables are still there:\n%s", got)
	}
}

func TestCostRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"unknown-script": `{"kind":"meta","script":"bench"}` + "\n" + `{"kind":"run","run":1,"variant":"tcp","calls_per_sec":1}` + "\n",
		"no-runs":        `{"kind":"meta","script":"tls"}` + "\n",
		"bad-kind":       `{"kind":"meta","script":"tls"}` + "\n" + `{"kind":"point"}` + "\n",
		"not-json":       "calls/s\n",
	} {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := runCost(file, ""); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
