package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calcrpc/calc/bench"
)

// syncBuffer is a bytes.Buffer safe for a server goroutine to write while
// the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var listening = regexp.MustCompile(`"addr":"([^"]+)"`)

// TestServeAndBench starts each peer with calc-peer serve and loads it
// with calc-peer bench, unary and streaming, bounded by a call count.
func TestServeAndBench(t *testing.T) {
	for _, peer := range []string{"drpc", "connect"} {
		t.Run(peer, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var log syncBuffer
			done := make(chan int, 1)
			go func() { done <- run(ctx, []string{"serve", "--peer", peer}, &log, &log) }()
			defer func() {
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("serve exited %d: %s", code, log.String())
				}
			}()
			var addr string
			for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if m := listening.FindStringSubmatch(log.String()); m != nil {
					addr = m[1]
				}
			}
			if addr == "" {
				t.Fatalf("no listening address: %s", log.String())
			}
			for _, load := range [][]string{
				{"--conns", "2", "--concurrency", "4"},
				{"--rpc", "stream", "--conns", "2", "--pipeline", "8"},
			} {
				var out, errs bytes.Buffer
				args := append([]string{"bench", "--peer", peer, "--addr", addr, "--count", "200", "--duration", "20s", "--warmup", "0", "--json"}, load...)
				if code := run(context.Background(), args, &out, &errs); code != 0 {
					t.Fatalf("%s: exit %d: %s", strings.Join(load, " "), code, errs.String())
				}
				var rep bench.Report
				if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Transport != peer || rep.Calls < 200 || len(rep.Errors) > 0 {
					t.Errorf("%s: transport %s, %d calls, errors %v; want %s, at least 200 calls and none failed", strings.Join(load, " "), rep.Transport, rep.Calls, rep.Errors, peer)
				}
			}
		})
	}
}

// TestUsage checks the refusals: each is a usage error, exit 2.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"serve", "--peer", "thrift"},
		{"bench", "--peer", "drpc"},
		{"bench", "--peer", "drpc", "--addr", "127.0.0.1:1", "--rpc", "evaluate"},
		{"bench", "--peer", "connect", "--addr", "192.0.2.1:80"},
	} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("calc-peer %q: exit %d, want 2 (%s)", args, code, errs.String())
		}
	}
}
