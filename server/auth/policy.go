// Package auth authenticates and authorizes the calls of every transport.
// A bearer token in the "authorization" metadata, or under mTLS a client
// certificate's identity, names a principal; the principal's method
// patterns say what it may call; token buckets (golang.org/x/time/rate)
// limit each principal's calls, and each remote address's calls made
// without credentials. One pair of gRPC interceptors does it all, so the
// raw TCP and gRPC endpoints enforce the very same policy.
//
// The policy is a JSON file that holds no secret: tokens appear only as
// their SHA-256 digests, compared in constant time. Neither a token nor
// its digest ever appears in a log or an error.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/time/rate"
)

// File is the policy file's format:
//
//	{
//	  "principals": [
//	    {"name": "ci", "token_sha256": "<hex SHA-256 of the token>",
//	     "methods": ["/calculator.v1.CalculatorService/*"], "rate": 100, "burst": 200},
//	    {"name": "ops", "certificate": "calc-dev-client", "methods": ["*"]}
//	  ],
//	  "open_methods": ["/grpc.health.v1.Health/*"],
//	  "unauthenticated_rate": 20, "unauthenticated_burst": 40
//	}
//
// A method pattern is a full method name ("/pkg.Service/Method"), a
// service's methods ("/pkg.Service/*") or every method ("*"). Reflection
// is a service like any other: a principal needs
// "/grpc.reflection.v1.ServerReflection/*" to use it.
type File struct {
	// Principals are the identities calls may present.
	Principals []Principal `json:"principals"`
	// OpenMethods may be called without credentials; absent, health
	// checks ("/grpc.health.v1.Health/*") are open. An empty list closes
	// everything.
	OpenMethods *[]string `json:"open_methods,omitempty"`
	// UnauthenticatedRate and UnauthenticatedBurst limit, per remote IP
	// address, the calls made without credentials (to open methods);
	// 0 means 20 calls/s with a burst of 40.
	UnauthenticatedRate  float64 `json:"unauthenticated_rate,omitempty"`
	UnauthenticatedBurst int     `json:"unauthenticated_burst,omitempty"`
}

// Principal is one identity of a policy File.
type Principal struct {
	// Name names the principal in logs and errors.
	Name string `json:"name"`
	// TokenSHA256 is the hex SHA-256 digest of the principal's bearer
	// token (`printf %s "$TOKEN" | sha256sum`).
	TokenSHA256 string `json:"token_sha256,omitempty"`
	// Certificate is a client certificate identity (its subject's common
	// name, or one of its DNS or URI names) that, verified under mTLS,
	// names this principal.
	Certificate string `json:"certificate,omitempty"`
	// Methods are the patterns of the methods the principal may call.
	Methods []string `json:"methods"`
	// Rate and Burst are the principal's token bucket: calls per second
	// and the largest burst; 0 means no limit.
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
}

// Defaults of a policy File.
const (
	DefaultUnauthenticatedRate  = 20
	DefaultUnauthenticatedBurst = 40
)

// DefaultOpenMethods are open when a File does not say: health checks.
var DefaultOpenMethods = []string{"/grpc.health.v1.Health/*"}

// policy is a parsed, checked File.
type policy struct {
	principals []*principal
	open       []string
	anonRate   rate.Limit
	anonBurst  int
}

type principal struct {
	name    string
	digest  []byte // nil: no token
	cert    string
	methods []string
	limiter *rate.Limiter // nil: no limit
}

// readPolicy reads and checks a policy file. Its errors name the file and
// the principal at fault, never a digest.
func readPolicy(path string) (*policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p, err := f.compile()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// compile checks f and builds its policy.
func (f *File) compile() (*policy, error) {
	p := &policy{
		open:      DefaultOpenMethods,
		anonRate:  rate.Limit(DefaultUnauthenticatedRate),
		anonBurst: DefaultUnauthenticatedBurst,
	}
	if f.OpenMethods != nil {
		p.open = *f.OpenMethods
	}
	if f.UnauthenticatedRate < 0 || f.UnauthenticatedBurst < 0 {
		return nil, errors.New("unauthenticated_rate and unauthenticated_burst must not be negative")
	}
	if f.UnauthenticatedRate > 0 {
		p.anonRate = rate.Limit(f.UnauthenticatedRate)
		p.anonBurst = max(f.UnauthenticatedBurst, 1)
	}
	names := map[string]bool{}
	for i, fp := range f.Principals {
		switch {
		case fp.Name == "":
			return nil, fmt.Errorf("principal %d has no name", i+1)
		case names[fp.Name]:
			return nil, fmt.Errorf("principal %q is named twice", fp.Name)
		case fp.TokenSHA256 == "" && fp.Certificate == "":
			return nil, fmt.Errorf("principal %q has neither token_sha256 nor certificate", fp.Name)
		case fp.Rate < 0 || fp.Burst < 0:
			return nil, fmt.Errorf("principal %q: rate and burst must not be negative", fp.Name)
		}
		names[fp.Name] = true
		pr := &principal{name: fp.Name, cert: fp.Certificate, methods: fp.Methods}
		if fp.TokenSHA256 != "" {
			d, err := hex.DecodeString(fp.TokenSHA256)
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("principal %q: token_sha256 is not a hex SHA-256 digest (64 hex digits)", fp.Name)
			}
			pr.digest = d
		}
		for _, m := range fp.Methods {
			if !validPattern(m) {
				return nil, fmt.Errorf("principal %q: method pattern %q is not /pkg.Service/Method, /pkg.Service/* or *", fp.Name, m)
			}
		}
		if fp.Rate > 0 {
			pr.limiter = rate.NewLimiter(rate.Limit(fp.Rate), max(fp.Burst, 1))
		}
		p.principals = append(p.principals, pr)
	}
	for _, m := range p.open {
		if !validPattern(m) {
			return nil, fmt.Errorf("open method pattern %q is not /pkg.Service/Method, /pkg.Service/* or *", m)
		}
	}
	return p, nil
}

// validPattern reports whether m is a method pattern.
func validPattern(m string) bool {
	if m == "*" {
		return true
	}
	svc, meth, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	return strings.HasPrefix(m, "/") && ok && svc != "" && meth != "" && !strings.Contains(meth, "/")
}

// matches reports whether method matches one of patterns.
func matches(patterns []string, method string) bool {
	for _, p := range patterns {
		switch {
		case p == "*", p == method:
			return true
		case strings.HasSuffix(p, "/*") && strings.HasPrefix(method, p[:len(p)-1]):
			return true
		}
	}
	return false
}
