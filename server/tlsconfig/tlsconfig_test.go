package tlsconfig_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/calcrpc/calc/internal/devcerts"
	"github.com/calcrpc/calc/server/tlsconfig"
)

// files writes a server pair of ca and ca's own certificate as client CA
// to dir, returning their names and the pair.
func files(t *testing.T, dir string, ca *devcerts.CA) (tlsconfig.Files, *devcerts.Pair) {
	t.Helper()
	pair, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := tlsconfig.Files{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem"), ClientCA: filepath.Join(dir, "ca.pem")}
	write(t, f.Cert, pair.CertPEM)
	write(t, f.Key, pair.KeyPEM)
	write(t, f.ClientCA, ca.CertPEM)
	return f, pair
}

func write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
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

// serving returns the serial of the certificate a handshake would get.
func serving(t *testing.T, r *tlsconfig.Reloader) string {
	t.Helper()
	c, err := r.Config().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.String()
}

func TestNewErrors(t *testing.T) {
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, _ := files(t, dir, ca)
	other, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "other-key.pem")
	write(t, otherKey, other.KeyPEM)
	garbage := filepath.Join(dir, "garbage.pem")
	write(t, garbage, []byte("not PEM"))
	for _, tc := range []struct {
		name  string
		files tlsconfig.Files
		err   string
	}{
		{"no key", tlsconfig.Files{Cert: good.Cert}, "tlsconfig: both a certificate and a key file are needed"},
		{"missing cert", tlsconfig.Files{Cert: filepath.Join(dir, "missing.pem"), Key: good.Key}, "no such file or directory"},
		{"key of another certificate", tlsconfig.Files{Cert: good.Cert, Key: otherKey}, "tls: private key does not match public key"},
		{"cert not PEM", tlsconfig.Files{Cert: garbage, Key: good.Key}, "tls: failed to find any PEM data in certificate input"},
		{"client CA not PEM", tlsconfig.Files{Cert: good.Cert, Key: good.Key, ClientCA: garbage}, "garbage.pem holds no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconfig.New(tc.files, tlsconfig.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New: %v; want an error with %q", err, tc.err)
			}
		})
	}
}

// TestReload swaps the files: Reload serves the new certificate; a bad
// file is logged, without key material, and the previous certificate
// kept.
func TestReload(t *testing.T) {
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, first := files(t, t.TempDir(), ca)
	var logs syncBuffer
	r, err := tlsconfig.New(f, tlsconfig.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := serving(t, r); got != first.Serial.String() {
		t.Fatalf("serving serial %s, want %s", got, first.Serial)
	}
	second, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.Cert, second.CertPEM)
	write(t, f.Key, second.KeyPEM)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serving(t, r); got != second.Serial.String() {
		t.Fatalf("after Reload serving serial %s, want %s", got, second.Serial)
	}

	third, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.Key, third.KeyPEM) // the certificate is still second's
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Fatalf("Reload with a mismatched key: %v", err)
	}
	if got := serving(t, r); got != second.Serial.String() {
		t.Fatalf("after a failed Reload serving serial %s, want %s", got, second.Serial)
	}
	out := logs.String()
	if !strings.Contains(out, "TLS reload failed; still serving the previous certificate") {
		t.Fatalf("no error logged: %s", out)
	}
	for _, key := range [][]byte{first.KeyPEM, second.KeyPEM, third.KeyPEM} {
		body := strings.Split(string(key), "\n")[1] // a line of base64 key
		if strings.Contains(out, body) {
			t.Fatalf("key material in the log: %s", out)
		}
	}
}

// TestClientCAReload checks that the client CA pool offered to a
// handshake is the one last loaded.
func TestClientCAReload(t *testing.T) {
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := files(t, t.TempDir(), ca)
	r, err := tlsconfig.New(f, tlsconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pool := func() string {
		cfg, err := r.Config().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.MinVersion != tls.VersionTLS13 {
			t.Fatalf("config for client: %+v, %v", cfg, err)
		}
		if !cfg.ClientCAs.Equal(ca.Pool()) {
			return "other"
		}
		return "first"
	}
	if got := pool(); got != "first" {
		t.Fatalf("client CA pool %s, want first", got)
	}
	next, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.ClientCA, next.CertPEM)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := pool(); got != "other" {
		t.Fatalf("client CA pool %s after Reload, want other", got)
	}
}

// TestWatch checks that Watch reloads a changed file and stops with its
// context.
func TestWatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := files(t, t.TempDir(), ca)
	r, err := tlsconfig.New(f, tlsconfig.Options{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Watch(ctx); close(done) }()
	next, err := ca.Server(devcerts.Options{CommonName: "next"}) // a different size
	if err != nil {
		t.Fatal(err)
	}
	write(t, f.Key, next.KeyPEM)
	write(t, f.Cert, next.CertPEM)
	for deadline := time.Now().Add(5 * time.Second); serving(t, r) != next.Serial.String(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not reload the changed files within 5s")
		}
	}
	cancel()
	<-done
}
