package webui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/calcrpc/calc/server/webui"
)

// serve mounts the page on a mux as calcd does, beside a handler of its
// own for every other path.
func serve(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	ui := webui.Handler()
	for _, p := range webui.Patterns {
		mux.Handle(p, ui)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not the page's", http.StatusTeapot) })
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPage: "/" is the page, with a Content-Security-Policy; every asset
// it names is served with its type; an unchanged file answers 304 to its
// ETag.
func TestPage(t *testing.T) {
	s := serve(t)
	resp, page := get(t, s.URL+"/", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	assets := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(assets) != 2 {
		t.Fatalf("the page names %d assets, want the script and the style sheet: %v", len(assets), assets)
	}
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	for _, a := range assets {
		resp, body := get(t, s.URL+a[1], nil)
		want := types[a[1][strings.LastIndex(a[1], "."):]]
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want || len(body) < 1000 {
			t.Errorf("GET %s: %s %q, %d bytes", a[1], resp.Status, resp.Header.Get("Content-Type"), len(body))
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", a[1])
		}
		etag := resp.Header.Get("ETag")
		again, _ := get(t, s.URL+a[1], http.Header{"If-None-Match": {etag}})
		if etag == "" || again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s: %s, want 304", a[1], etag, again.Status)
		}
	}
}

// TestOtherPaths: other paths, and other methods on the page's, stay the
// mux's; an unknown asset is 404.
func TestOtherPaths(t *testing.T) {
	s := serve(t)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/elsewhere", http.StatusTeapot},
		{"GET", "/index.html", http.StatusTeapot},
		{"GET", "/assets/nope.js", http.StatusNotFound},
		{"POST", "/", http.StatusTeapot},
		{"HEAD", "/assets/app.css", http.StatusOK},
	} {
		req, _ := http.NewRequest(c.method, s.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}
