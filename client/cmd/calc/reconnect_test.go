package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/calcrpc/calc/server/calcd"
)

// serveTCPAt starts a calcd whose raw TCP endpoint listens on addr and
// returns its address with a function that shuts it down, which also runs
// when the test ends if not called before.
func serveTCPAt(t *testing.T, addr string) (string, func()) {
	t.Helper()
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := calcd.New(calcd.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(calcd.Listeners{TCP: tl, GRPC: gl}) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, calcd.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	}
	t.Cleanup(stop)
	return tl.Addr().String(), stop
}

// TestREPLOutlivesRestart evaluates an expression, restarts the server on
// the same port, and evaluates another in the same REPL.
func TestREPLOutlivesRestart(t *testing.T) {
	addr, stop := serveTCPAt(t, "127.0.0.1:0")
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	var stderr bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		code := run(context.Background(), []string{"--addr", addr, "--timeout", "30s"}, stdinR, stdoutW, &stderr, noEnv)
		stdoutW.Close()
		exited <- code
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	answer := func(expression, want string) {
		t.Helper()
		if _, err := io.WriteString(stdinW, expression+"\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case got, ok := <-lines:
			if !ok || got != want {
				stdinW.Close()
				t.Fatalf("%s printed %q (stdout open %v), want %q; exit %d, stderr %q", expression, got, ok, want, <-exited, stderr.String())
			}
		case <-time.After(time.Minute):
			stdinW.Close()
			t.Fatalf("no answer to %s within a minute", expression)
		}
	}
	answer("1 + 1", "2")
	stop()
	serveTCPAt(t, addr)
	answer("2 + 3", "5")
	stdinW.Close()
	if code := <-exited; code != 0 || stderr.Len() > 0 {
		t.Fatalf("calc exited %d, stderr %q", code, stderr.String())
	}
}
