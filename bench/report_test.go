package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// sampleResult is 1000 calls of 1µs … 1000µs in 2 s, 3 UNAVAILABLE.
func sampleResult() *Result {
	h := new(Histogram)
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	return &Result{
		Latency: h, Sent: 1003, Calls: 1000, Errors: map[codes.Code]uint64{codes.Unavailable: 3}, Elapsed: 2 * time.Second,
		FirstErrors: map[codes.Code]string{codes.Unavailable: "connection lost"},
		Used:        Counters{BytesRead: 12030, BytesWritten: 17051, CPU: time.Second, ServerCPU: 500 * time.Millisecond, ServerMallocs: 5015, Retries: 7},
	}
}

func TestReportFill(t *testing.T) {
	r := &Report{Transport: "tcp"}
	r.Fill(sampleResult(), true, true)
	approx := func(name string, got, want float64) {
		t.Helper()
		if d := got - want; d > want*maxRelErr+1e-9 || -d > want*maxRelErr+1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	approx("calls_per_sec", r.CallsPerSec, 500)
	approx("p50", r.P50US, 500)
	approx("p99", r.P99US, 990)
	approx("max", r.MaxUS, 1000)
	approx("bytes_per_call", r.BytesPerCall, 29)
	approx("client_cpu_us_per_call", r.ClientCPUUSPerCall, 1e6/1003)
	approx("client_cpu_pct", r.ClientCPUPct, 50)
	approx("server_cpu_pct", *r.ServerCPUPct, 25)
	approx("server_allocs_per_call", *r.ServerAllocsPerCall, 5)
	if r.Errors["UNAVAILABLE"] != 3 || len(r.Errors) != 1 {
		t.Errorf("errors %v", r.Errors)
	}
	if r.FirstErrors["UNAVAILABLE"] != "connection lost" || len(r.FirstErrors) != 1 {
		t.Errorf("first errors %v", r.FirstErrors)
	}
	if r.Sent != 1003 || r.Retries != 7 {
		t.Errorf("sent %d, retries %d; want 1003 and 7", r.Sent, r.Retries)
	}
	if n := len(r.Percentiles); n != chartPoints*chartDecades+1 || r.Percentiles[0].P != 0 || r.Percentiles[n-1].P != 99.999 {
		t.Errorf("percentiles %v", r.Percentiles)
	}

	var out bytes.Buffer
	if err := json.NewEncoder(&out).Encode(r); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"calls_per_sec", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "errors", "bytes_per_call",
		"client_cpu_us_per_call", "calls", "sent", "retries", "duration_s", "transport", "conns", "concurrency", "pipeline", "server_allocs_per_call"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}

	r.Fill(sampleResult(), false, false)
	if r.ServerCPUUSPerCall != nil || r.ServerAllocsPerCall != nil {
		t.Errorf("server figures without server probes")
	}
	out.Reset()
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"500 calls/s", "UNAVAILABLE 3", "first UNAVAILABLE: connection lost\n", "29.0 bytes/call", "sent        1003 calls, 7 retries\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, out.String())
		}
	}

}

func TestFormatMicros(t *testing.T) {
	for us, want := range map[float64]string{0.5: "0.50µs", 81.24: "81.2µs", 999: "999µs", 1250: "1.25ms", 2.1e6: "2.10s"} {
		if got := FormatMicros(us); got != want {
			t.Errorf("FormatMicros(%v) = %q, want %q", us, got, want)
		}
	}
}

func TestFormatCount(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 1234567.8: "1,234,568", -45678: "-45,678"} {
		if got := FormatCount(v); got != want {
			t.Errorf("FormatCount(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteChart(t *testing.T) {
	r := &Report{}
	r.Fill(sampleResult(), false, false)
	var b bytes.Buffer
	series := []Series{r.Series("tcp <fast>"), r.Series("grpc"), {Label: "empty"}}
	if err := WriteChart(&b, "unary c=1 & more", "subtitle", series); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	lines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != len(series) {
		t.Fatalf("%d polylines, want %d", lines, len(series))
	}
}

func TestParsers(t *testing.T) {
	cpu, err := parseStatCPU([]byte("1234 (calc d) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 30 0 0 20 0 8 0 100 0 0"))
	if err != nil || cpu != 2800*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 2.8s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("parseStatCPU of a short line: no error")
	}
	rss, err := parseVmRSS(strings.NewReader("Name:\tcalcd\nVmPeak:\t  9000 kB\nVmRSS:\t   1500 kB\n"))
	if err != nil || rss != 1500<<10 {
		t.Errorf("parseVmRSS = %v, %v; want %d", rss, err, 1500<<10)
	}
	if _, err := parseVmRSS(strings.NewReader("Name:\tcalcd\n")); err == nil {
		t.Error("parseVmRSS without VmRSS: no error")
	}
	n, err := parseMallocs(strings.NewReader("heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 1\n# Mallocs = 98765\n# Frees = 5\n"))
	if err != nil || n != 98765 {
		t.Errorf("parseMallocs = %v, %v; want 98765", n, err)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:4000", true},
		{"127.3.2.1:1", true},
		{"[::1]:50051", true},
		{"localhost:4000", true},
		{"10.0.0.1:4000", false},
		{"[2001:db8::1]:1", false},
		{":4000", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		err := CheckLoopback(context.Background(), tt.addr)
		if (err == nil) != tt.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}
	// Options.CheckLoopback takes --addr's lists and dns:/// names too.
	lists := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:4001,127.0.0.1:4002, [::1]:4003", true},
		{"dns:///localhost:4000", true},
		{"127.0.0.1:4001,10.0.0.1:4000", false},
		{"dns:///10.0.0.1:4000", false},
	}
	for _, tt := range lists {
		err := new(Options).CheckLoopback(context.Background(), tt.addr, "")
		if (err == nil) != tt.ok {
			t.Errorf("Options.CheckLoopback(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
		if err := (&Options{AllowRemote: true}).CheckLoopback(context.Background(), tt.addr); err != nil {
			t.Errorf("Options.CheckLoopback(%q) with AllowRemote = %v", tt.addr, err)
		}
	}
}

// TestSnapshotterMallocs checks that the probe's own cost is subtracted: a
// fake pprof endpoint whose every read costs 500 allocations, with 1000
// allocated by the "load" between two snapshots.
func TestSnapshotterMallocs(t *testing.T) {
	var mallocs atomic.Uint64
	mallocs.Store(100000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mallocs.Add(200) // before the count is read
		fmt.Fprintf(w, "heap profile\n# Mallocs = %d\n", mallocs.Load())
		mallocs.Add(300) // after
	}))
	defer srv.Close()
	snap := Snapshotter(nil, Server{PprofAddr: strings.TrimPrefix(srv.URL, "http://")})
	start, err := snap()
	if err != nil {
		t.Fatal(err)
	}
	mallocs.Add(1000)
	end, err := snap()
	if err != nil {
		t.Fatal(err)
	}
	if got := end.sub(start).ServerMallocs; got != 1000 {
		t.Fatalf("server mallocs %d, want 1000", got)
	}
}
