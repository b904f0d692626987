package bench_test

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/calcrpc/calc/bench"
	"github.com/calcrpc/calc/server/calcd"
	"github.com/calcrpc/calc/server/calcd/calcdtest"
	"github.com/calcrpc/calc/server/tcpserver"
)

// TestRunBurst runs tiny bursts against an in-process server, whose RSS is
// this process's: it checks what the server answered, not the memory.
func TestRunBurst(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	tests := []struct {
		name     string
		opts     tcpserver.Options
		cfg      bench.BurstConfig
		goAways  uint64 // RESOURCE_EXHAUSTED GOAWAYs, at least
		statuses uint64 // RESOURCE_EXHAUSTED STATUSes, exactly
		open     int    // streams left open
	}{
		// 256 KiB hold one connection's 200 KiB (taken in growing
		// buffers): most of the others are refused.
		{"frames past the budget", tcpserver.Options{MaxPendingFrameBytes: 256 << 10},
			bench.BurstConfig{Kind: bench.BurstFrames, Conns: 6, Trickle: 200 << 10}, 3, 0, 0},
		{"frames within the budget", tcpserver.Options{},
			bench.BurstConfig{Kind: bench.BurstFrames, Conns: 6, Trickle: 200 << 10}, 0, 0, 0},
		// 10 streams per connection and 25 in all: 2 + 2 + 7 refused.
		{"streams past both limits", tcpserver.Options{MaxConcurrentStreams: 10, MaxStreams: 25},
			bench.BurstConfig{Kind: bench.BurstStreams, Conns: 3, Streams: 12}, 0, 11, 25},
		{"streams within the limits", tcpserver.Options{},
			bench.BurstConfig{Kind: bench.BurstStreams, Conns: 3, Streams: 12}, 0, 0, 36},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := calcdtest.Start(t, calcd.Config{TCP: tt.opts})
			cfg := tt.cfg
			cfg.Addr, cfg.ServerPID = srv.TCPAddr, os.Getpid()
			cfg.TrickleTime, cfg.Hold = 200*time.Millisecond, 200*time.Millisecond
			cfg.Wait, cfg.SampleEvery, cfg.Timeout = time.Second, 400*time.Millisecond, 5*time.Second
			rep, err := bench.RunBurst(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Errors) != 0 || rep.Admitted != cfg.Conns {
				t.Fatalf("errors %v, %d of %d admitted", rep.Errors, rep.Admitted, cfg.Conns)
			}
			refused := rep.GoAways["RESOURCE_EXHAUSTED"]
			if tt.goAways == 0 && len(rep.GoAways) != 0 || refused < tt.goAways || uint64(len(rep.GoAways)) > min(refused, 1) {
				t.Fatalf("GOAWAYs %v, want %d or more RESOURCE_EXHAUSTED and no other", rep.GoAways, tt.goAways)
			}
			if rep.ClosedByServer != int(refused) {
				t.Fatalf("%d connections closed by the server, %d refused", rep.ClosedByServer, refused)
			}
			if got := rep.Statuses["RESOURCE_EXHAUSTED"]; got != tt.statuses || uint64(len(rep.Statuses)) > min(got, 1) {
				t.Fatalf("STATUSes %v, want %d RESOURCE_EXHAUSTED and no other", rep.Statuses, tt.statuses)
			}
			if rep.StreamsOpen != tt.open {
				t.Fatalf("%d streams open, want %d", rep.StreamsOpen, tt.open)
			}
			// Samples at 0.4, 0.8 and 1 s after the close.
			if n := len(rep.RSSAfter); n != 3 || rep.RSSAfter[n-1].AfterS < 1 || rep.RSSPeakBytes < rep.RSSBeforeBytes {
				t.Fatalf("RSS samples %+v, peak %d, before %d", rep.RSSAfter, rep.RSSPeakBytes, rep.RSSBeforeBytes)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "server RSS") {
				t.Fatalf("text %q: %v", text.String(), err)
			}
		})
	}
}

func TestRunBurstUnknown(t *testing.T) {
	if _, err := bench.RunBurst(context.Background(), bench.BurstConfig{Kind: "bytes"}); err == nil || !strings.Contains(err.Error(), "unknown burst") {
		t.Fatalf("err %v", err)
	}
}
