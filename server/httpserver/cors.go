package httpserver

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CORS configures cross-origin resource sharing on the RPC routes, so
// that pages served from other origins can call the services with fetch
// (connect-web, grpc-web). The zero value allows no origin: no
// Access-Control-* header is ever sent, and browsers keep other origins'
// pages from reading the answers.
type CORS struct {
	// AllowedOrigins are the origins, as browsers send them in the Origin
	// header (scheme://host[:port], such as "https://app.example.com"),
	// whose pages may call; "*" allows every origin. Matching is exact
	// and case-insensitive.
	AllowedOrigins []string
	// MaxAge is how long a browser may cache a preflight request's answer;
	// 0 means DefaultCORSMaxAge.
	MaxAge time.Duration
}

// The headers of the Connect, gRPC-Web and gRPC protocols that browsers
// must be allowed to send and to read (connectrpc.com/cors's lists), and
// the bearer token.
var (
	corsAllowedHeaders = strings.Join([]string{
		"Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms", "Grpc-Timeout",
		"X-Grpc-Web", "X-User-Agent", "Authorization",
	}, ", ")
	corsExposedHeaders = strings.Join([]string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"}, ", ")
)

// wrap returns next with c applied; with no origin allowed, next itself.
//
// A preflight request (OPTIONS with Access-Control-Request-Method) from
// an allowed origin asking for GET or POST is answered 204 with what may
// be sent; from any other origin, or for another method, 403 without
// Access-Control-* headers. Other requests reach next; an allowed
// origin's get Access-Control-Allow-Origin and the headers it may read.
func (c CORS) wrap(next http.Handler) http.Handler {
	if len(c.AllowedOrigins) == 0 {
		return next
	}
	anyOrigin := slices.Contains(c.AllowedOrigins, "*")
	allowed := func(origin string) bool {
		return anyOrigin || slices.ContainsFunc(c.AllowedOrigins, func(o string) bool { return strings.EqualFold(o, origin) })
	}
	maxAge := strconv.Itoa(int(orDefault(c.MaxAge, DefaultCORSMaxAge) / time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h.Add("Vary", "Origin")
		allowOrigin := origin
		if anyOrigin {
			allowOrigin = "*"
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			method := r.Header.Get("Access-Control-Request-Method")
			if !allowed(origin) || (method != http.MethodGet && method != http.MethodPost) {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.Set("Access-Control-Allow-Origin", allowOrigin)
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", corsAllowedHeaders)
			h.Set("Access-Control-Max-Age", maxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed(origin) {
			h.Set("Access-Control-Allow-Origin", allowOrigin)
			h.Set("Access-Control-Expose-Headers", corsExposedHeaders)
		}
		next.ServeHTTP(w, r)
	})
}
