// Package webui is calc's web page: a small calculator served on the HTTP
// port at "/" and embedded in the binary. It evaluates expressions with the
// Connect protocol (a JSON POST to /calculator.v1.CalculatorService/Evaluate),
// marks an error at the byte offset the server reports, keeps a history of
// the calls, and runs CalculateStream over the WebSocket endpoint (/ws,
// server/wsserver) with the Node client's browser transport.
//
// The page is static/index.html, static/assets/app.css and
// static/assets/app.js; the script is built from web/app.ts by build.sh
// (esbuild, pinned in client/node) and committed, so a Go-only build needs
// no Node. scripts/test.sh checks that the committed bundle is what
// build.sh builds.
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// Patterns are the http.ServeMux patterns Handler serves: the page at "/"
// alone (other paths stay the mux's) and its assets.
var Patterns = []string{"GET /{$}", "GET /assets/"}

// contentSecurityPolicy lets the page load only its own script and style
// and talk only to its own origin (fetch and the WebSocket).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler returns the handler of the page and its assets; mount it on
// each of Patterns. Files are served with an ETag (their SHA-256), so a
// browser revalidates them cheaply, and with a Content-Security-Policy.
func Handler() http.Handler {
	files := map[string]file{}
	_ = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		files["/"+path.Clean(p[len("static/"):])] = file{body: body, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	files["/"] = files["/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok || r.URL.Path == "/index.html" {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if f.contentType == "text/html; charset=utf-8" {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

// contentType is the Content-Type of an embedded file, by its extension.
func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	}
	return "application/octet-stream"
}
