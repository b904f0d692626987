package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/calcrpc/calc/server/endpoint"
)

// maxAnonAddrs bounds how many remote addresses' limiters an
// Authenticator keeps; past it an arbitrary half is forgotten (and starts
// with a full bucket again).
const maxAnonAddrs = 10000

// Authenticator enforces a policy file on calls. Its zero value is not
// usable; make one with New.
type Authenticator struct {
	path   string
	logger *slog.Logger
	policy atomic.Pointer[policy]

	mu   sync.Mutex
	anon map[string]*rate.Limiter // per remote address, calls without credentials
}

// New reads the policy file at path. logger (nil: slog.Default()) receives
// reloads and their failures.
func New(path string, logger *slog.Logger) (*Authenticator, error) {
	if logger == nil {
		logger = slog.Default()
	}
	p, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{path: path, logger: logger, anon: map[string]*rate.Limiter{}}
	a.policy.Store(p)
	return a, nil
}

// Reload reads the policy file again. A file that cannot be read or is
// wrong is logged and returned, and the policy in force stays. Rate limits
// start afresh with the new policy.
func (a *Authenticator) Reload() error {
	p, err := readPolicy(a.path)
	if err != nil {
		a.logger.Error("auth: policy not reloaded; the previous one stays in force", "file", a.path, "error", err)
		return err
	}
	a.policy.Store(p)
	a.mu.Lock()
	a.anon = map[string]*rate.Limiter{}
	a.mu.Unlock()
	a.logger.Info("auth: policy reloaded", "file", a.path, "principals", len(p.principals))
	return nil
}

// Watch reloads the policy whenever its file's size or modification time
// changes, checking every interval, until ctx ends.
func (a *Authenticator) Watch(ctx context.Context, interval time.Duration) {
	stamp := func() (int64, time.Time) {
		fi, err := os.Stat(a.path)
		if err != nil {
			return -1, time.Time{}
		}
		return fi.Size(), fi.ModTime()
	}
	size, mod := stamp()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s, m := stamp(); s != size || !m.Equal(mod) {
			size, mod = s, m
			_ = a.Reload()
		}
	}
}

// UnaryInterceptor enforces the policy on unary calls.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := a.authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor enforces the policy on streams, before the first
// message.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := a.authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// authorize decides a call to method: nil, or the status error the caller
// gets (UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED).
func (a *Authenticator) authorize(ctx context.Context, method string) error {
	p := a.policy.Load()
	pr, presented, err := p.identify(ctx)
	if err != nil {
		return err
	}
	if pr == nil {
		if !matches(p.open, method) {
			if presented {
				return status.Error(codes.Unauthenticated, "auth: the client certificate names no principal")
			}
			return status.Error(codes.Unauthenticated, "auth: missing credentials: send \"authorization: Bearer <token>\" metadata")
		}
		return a.limitAnon(ctx, p)
	}
	if !matches(pr.methods, method) {
		return status.Errorf(codes.PermissionDenied, "auth: principal %q may not call %s", pr.name, method)
	}
	if pr.limiter != nil {
		return limit(pr.limiter, "principal ", pr.name)
	}
	return nil
}

// identify returns the principal a call presents: by bearer token, else by
// verified client certificate; nil if none. presented reports a client
// certificate that named no principal. A token that matches no principal
// is an error: the caller meant to authenticate and failed.
func (p *policy) identify(ctx context.Context) (pr *principal, presented bool, err error) {
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		scheme, token, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return nil, false, status.Error(codes.Unauthenticated, "auth: the authorization metadata is not \"Bearer <token>\"")
		}
		digest := sha256.Sum256([]byte(token))
		var found *principal
		for _, c := range p.principals { // every digest is compared: the time says nothing about which matched
			if c.digest != nil && subtle.ConstantTimeCompare(c.digest, digest[:]) == 1 {
				found = c
			}
		}
		if found == nil {
			return nil, false, status.Error(codes.Unauthenticated, "auth: invalid token")
		}
		return found, false, nil
	}
	ids := certificateIdentities(ctx)
	for _, c := range p.principals {
		for _, id := range ids {
			if c.cert != "" && c.cert == id {
				return c, true, nil
			}
		}
	}
	return nil, len(ids) > 0, nil
}

// certificateIdentities returns the identities of the verified client
// certificate of a TLS peer: its subject's common name and its DNS and URI
// names.
func certificateIdentities(ctx context.Context) []string {
	pe, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := pe.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	leaf := info.State.VerifiedChains[0][0]
	ids := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		ids = append(ids, u.String())
	}
	return ids
}

// limitAnon applies the per-address limit on calls without credentials.
func (a *Authenticator) limitAnon(ctx context.Context, p *policy) error {
	key := "unknown"
	if pe, ok := peer.FromContext(ctx); ok {
		key = endpoint.PeerKey(pe.Addr)
	}
	a.mu.Lock()
	l := a.anon[key]
	if l == nil {
		if len(a.anon) >= maxAnonAddrs {
			n := 0
			for k := range a.anon { // map order: an arbitrary half
				delete(a.anon, k)
				if n++; n >= maxAnonAddrs/2 {
					break
				}
			}
		}
		l = rate.NewLimiter(p.anonRate, p.anonBurst)
		a.anon[key] = l
	}
	a.mu.Unlock()
	return limit(l, "unauthenticated calls from ", key)
}

// limit takes a token from l, or returns RESOURCE_EXHAUSTED with the delay
// after which one will be there (google.rpc.RetryInfo). The message names
// the bucket as kind+name, built only for a refusal.
func limit(l *rate.Limiter, kind, name string) error {
	r := l.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	r.Cancel()
	if d == rate.InfDuration {
		d = time.Duration(math.MaxInt64)
	}
	st := status.Newf(codes.ResourceExhausted, "auth: rate limit of %s%s reached; retry in %v", kind, name, d.Round(time.Millisecond))
	if ds, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
		st = ds
	}
	return st.Err()
}
