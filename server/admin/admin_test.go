package admin_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/calcrpc/calc/server/admin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHandler: each route answers as documented, and what is not turned
// on is not found.
func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "calc_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	ready := func() bool { return true }
	draining := func() bool { return false }
	tests := []struct {
		name     string
		opts     admin.Options
		method   string
		path     string
		wantCode int
		wantBody string // a substring
	}{
		{"healthz", admin.Options{}, "GET", "/healthz", 200, "ok"},
		{"healthz while draining", admin.Options{Ready: draining}, "GET", "/healthz", 200, "ok"},
		{"readyz by default", admin.Options{}, "GET", "/readyz", 200, "ok"},
		{"readyz ready", admin.Options{Ready: ready}, "GET", "/readyz", 200, "ok"},
		{"readyz draining", admin.Options{Ready: draining}, "GET", "/readyz", 503, "NOT_SERVING"},
		{"metrics", admin.Options{Metrics: reg}, "GET", "/metrics", 200, "calc_test_total 3"},
		{"no metrics registry", admin.Options{}, "GET", "/metrics", 404, ""},
		{"metrics by POST", admin.Options{Metrics: reg}, "POST", "/metrics", 405, ""},
		{"pprof off", admin.Options{}, "GET", "/debug/pprof/", 404, ""},
		{"pprof cmdline off", admin.Options{}, "GET", "/debug/pprof/cmdline", 404, ""},
		{"pprof on", admin.Options{Pprof: true}, "GET", "/debug/pprof/", 200, "goroutine"},
		{"pprof heap", admin.Options{Pprof: true}, "GET", "/debug/pprof/heap?debug=1", 200, "Mallocs"},
		{"unknown path", admin.Options{Pprof: true, Metrics: reg}, "GET", "/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			admin.Handler(tt.opts).ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("%s %s: %d %q, want %d with %q", tt.method, tt.path, rec.Code, rec.Body.String(), tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestServeShutdown: a Server answers on its listener, and after Shutdown
// Serve returns ErrServerClosed and the port is closed.
func TestServeShutdown(t *testing.T) {
	srv := admin.New(admin.Options{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	url := "http://" + lis.Addr().String() + "/healthz"
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, admin.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if _, err := client.Get(url); err == nil {
		t.Fatal("the admin port still answers after Shutdown")
	}
}
