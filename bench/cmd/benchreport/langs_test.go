package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// langsFile is a bench-langs.sh results file: Go and Java at c=1 and c=8,
// Java's gRPC c=8 run failed, and Python ran only over raw TCP.
const langsFile = `{"kind":"meta","date":"2027-01-02T03:04:05Z","commit":"0123456789abcdef0123","dirty":true,"nproc":2,"cpu_model":"AMD EPYC","load_start":"1.00 2.00 3.00","command":"BENCH_LANGS_CONC='1 8' scripts/bench-langs.sh go java python","duration_s":5,"warmup_s":2,"concurrency":[1,8],"langs":["go","java","python"],"calcd":"calcd v0.1.0"}
{"kind":"run","calcd_cpu_s":1.5,"wall_s":7.1,"exit":0,"lang":"go","transport":"tcp","concurrency":1,"calls":50000,"errors":0,"seconds":5,"calls_per_sec":10000,"p50_us":90,"p99_us":200}
{"kind":"run","calcd_cpu_s":2.5,"wall_s":7.1,"exit":0,"lang":"go","transport":"grpc","concurrency":1,"calls":20000,"errors":0,"seconds":5,"calls_per_sec":4000,"p50_us":240,"p99_us":500}
{"kind":"run","calcd_cpu_s":1.2,"wall_s":8.0,"exit":0,"lang":"java","transport":"tcp","concurrency":1,"calls":30000,"errors":0,"seconds":5,"calls_per_sec":6000,"p50_us":150,"p99_us":900}
{"kind":"run","calcd_cpu_s":1.1,"wall_s":8.0,"exit":0,"lang":"java","transport":"grpc","concurrency":1,"calls":10000,"errors":0,"seconds":5,"calls_per_sec":2000,"p50_us":450,"p99_us":1500}
{"kind":"run","calcd_cpu_s":0.9,"wall_s":7.5,"exit":0,"lang":"python","transport":"tcp","concurrency":1,"calls":25000,"errors":0,"seconds":5,"calls_per_sec":5000,"p50_us":180,"p99_us":400}
{"kind":"run","calcd_cpu_s":3.0,"wall_s":7.1,"exit":0,"lang":"go","transport":"tcp","concurrency":8,"calls":400000,"errors":0,"seconds":5,"calls_per_sec":80000,"p50_us":95,"p99_us":300}
{"kind":"run","calcd_cpu_s":3.0,"wall_s":7.1,"exit":0,"lang":"go","transport":"grpc","concurrency":8,"calls":100000,"errors":0,"seconds":5,"calls_per_sec":20000,"p50_us":380,"p99_us":1200}
{"kind":"run","calcd_cpu_s":2.0,"wall_s":8.0,"exit":0,"lang":"java","transport":"tcp","concurrency":8,"calls":150000,"errors":0,"seconds":5,"calls_per_sec":30000,"p50_us":250,"p99_us":2000}
{"kind":"run","calcd_cpu_s":0.5,"wall_s":8.0,"exit":1,"lang":"java","transport":"grpc","concurrency":8,"calls":5,"errors":3,"seconds":5,"calls_per_sec":1,"p50_us":1,"p99_us":1,"first_error":"UNAVAILABLE: io exception"}
{"kind":"run","calcd_cpu_s":0.9,"wall_s":7.5,"exit":0,"lang":"python","transport":"tcp","concurrency":8,"calls":20000,"errors":0,"seconds":5,"calls_per_sec":4000,"p50_us":1900,"p99_us":4000}
{"kind":"end","load_end":"4.00 5.00 6.00"}
`

func TestLangs(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "langs.jsonl")
	if err := os.WriteFile(raw, []byte(langsFile), 0o644); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(md, []byte("intro\n"+beginMarker+"\nkeep\n"+endMarker+"\n"+langsBeginMarker+"\nold table\n"+langsEndMarker+"\noutro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runLangs(raw, md); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for _, want := range []string{
		"_2 CPUs (AMD EPYC); 2027-01-02T03:04:05Z; commit 0123456789ab+dirty; `BENCH_LANGS_CONC='1 8' scripts/bench-langs.sh go java python`; 5 s per point after 2 s of warm-up; load average (1, 5, 15 min) 1.00 2.00 3.00 at the start, 4.00 5.00 6.00 at the end; calcd v0.1.0;",
		"| Go | tcp | calc-bench: `tcpconn` | 10,000 | 90.0µs | 80,000 | 8 | 300µs | 2.50× | 4.00× |",
		"| Go | grpc | calc-bench: grpc-go | 4,000 | 240µs | 20,000 | 8 | 1.20ms |  |  |",
		// Java's failed gRPC c=8 run is left out: its best is c=1.
		"| Java | tcp | `TcpChannel`, async stub | 6,000 | 150µs | 30,000 | 8 | 2.00ms | 3.00× | 15.00× |",
		"| Java | grpc | grpc-java (Netty), async stub | 2,000 | 450µs | 2,000 | 1 | 1.50ms |  |  |",
		// Python's best is c=1; it has no gRPC runs.
		"| Python | tcp | asyncio `TcpChannel` | 5,000 | 180µs | 5,000 | 1 | 400µs | – | – |",
		"| Python | grpc | `GrpcClient` (grpc.aio) | – | – | – | – | – |  |  |",
		"| language | transport | c=1 | c=8 |",
		"| Go | tcp | 10,000/s, 90.0µs / 200µs, calcd 1.5 s | 80,000/s, 95.0µs / 300µs, calcd 3.0 s |",
		"| Java | grpc | 2,000/s, 450µs / 1.50ms, calcd 1.1 s | – |",
		"- java grpc c=8: exit 1, 5 calls, 3 errors: UNAVAILABLE: io exception",
		"`go run ./bench/cmd/benchreport --langs " + raw + " --benchmarks BENCHMARKS.md`",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "old table") || !strings.Contains(s, beginMarker+"\nkeep\n"+endMarker) || !strings.HasSuffix(s, langsEndMarker+"\noutro\n") {
		t.Errorf("BENCHMARKS.md not spliced between the langs markers alone:\n%s", s)
	}
}

func TestLangsBadFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":   "",
		"no runs": `{"kind":"meta","nproc":2}` + "\n",
		"garbage": "{not json\n",
		"kind":    `{"kind":"what"}` + "\n",
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".jsonl")
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := runLangs(f, ""); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := runLangs(filepath.Join(dir, "missing.jsonl"), ""); err == nil {
		t.Error("a missing file: no error")
	}
	md := filepath.Join(dir, "nomarkers.md")
	if err := os.WriteFile(md, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "ok.jsonl")
	if err := os.WriteFile(raw, []byte(langsFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runLangs(raw, md); err == nil || !strings.Contains(err.Error(), langsBeginMarker) {
		t.Errorf("a file without the markers: %v", err)
	}
}
