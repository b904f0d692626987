package httpserver

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"

	"google.golang.org/grpc"
)

// Stats are the HTTP endpoint's own figures, beside the per-RPC metrics
// (grpc_server_*) that its grpc.Server's interceptors count.
type Stats struct {
	// RequestsRefused counts the requests to an RPC route (and to paths no
	// route serves) answered with an HTTP error before any gRPC handler
	// ran, which the per-RPC metrics therefore never see, by HTTP status:
	// "400" (a body or query that does not decode), "403" (a CORS
	// preflight from an origin not allowed), "404" (no such method or
	// path), "408" (BodyTimeout), "415" (a content type no protocol
	// takes), "429" (a message over the size limit, as Connect answers
	// RESOURCE_EXHAUSTED), and the rest of 4xx and 5xx as "other"; every
	// key is there from the start, at 0.
	// Requests net/http refuses before any handler (a header over
	// MaxHeaderBytes: 431; a malformed request: 400) are not counted.
	RequestsRefused map[string]uint64
}

// refusalCodes are the HTTP statuses Stats.RequestsRefused counts by
// name; any other error status counts as "other".
var refusalCodes = [...]int{400, 403, 404, 405, 408, 413, 415, 429, 500, 501, 503}

// refusals counts the requests refused before reaching a gRPC handler.
type refusals struct {
	byCode [len(refusalCodes)]atomic.Uint64
	other  atomic.Uint64
}

func (c *refusals) add(code int) {
	for i, k := range refusalCodes {
		if k == code {
			c.byCode[i].Add(1)
			return
		}
	}
	c.other.Add(1)
}

func (c *refusals) snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(refusalCodes)+1)
	for i, k := range refusalCodes {
		m[strconv.Itoa(k)] = c.byCode[i].Load()
	}
	m["other"] = c.other.Load()
	return m
}

// Stats returns the endpoint's figures.
func (s *Server) Stats() Stats {
	return Stats{RequestsRefused: s.refused.snapshot()}
}

// reachedKey keys the flag that a request reached a gRPC handler.
type reachedKey struct{}

// countRefusals counts, in s.refused, the requests that next answers with
// an HTTP error (4xx or 5xx) without passing them to the gRPC server
// (which markReachedUnary and markReachedStream record).
func (s *Server) countRefusals(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached := new(atomic.Bool)
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), reachedKey{}, reached)))
		if sw.code >= 400 && !reached.Load() {
			s.refused.add(sw.code)
		}
	})
}

// markReachedUnary and markReachedStream, outermost on the grpc.Server
// behind the transcoder, record for countRefusals that a call has reached
// the interceptors, where the per-RPC metrics count it. (A request that
// reaches the grpc.Server may still fail before them: vanguard decodes a
// JSON body while gRPC reads it.)
func markReachedUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	markReached(ctx)
	return handler(ctx, req)
}

func markReachedStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	markReached(ss.Context())
	return handler(srv, ss)
}

func markReached(ctx context.Context) {
	if reached, ok := ctx.Value(reachedKey{}).(*atomic.Bool); ok {
		reached.Store(true)
	}
}

// statusWriter records the status of the response written through it.
// Flush and Unwrap keep http.Flusher and http.ResponseController working
// for the handlers behind it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends what is buffered, as http.Flusher does.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the ResponseWriter underneath, for
// http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
