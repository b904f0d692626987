package devcerts_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/calcrpc/calc/internal/devcerts"
)

// TestWriteDir checks the files the devcerts tool writes: a server
// certificate for the hosts and a client certificate, both chaining to
// ca.pem, keys readable by their owner only, and no overwriting.
func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := devcerts.WriteDir(dir, devcerts.Options{Hosts: []string{"calc.test", "127.0.0.1"}, Validity: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(read(devcerts.CAFile)) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, tc := range []struct {
		cert, key string
		usage     x509.ExtKeyUsage
		name      string // DNS name or common name to check
	}{
		{devcerts.ServerCertFile, devcerts.ServerKeyFile, x509.ExtKeyUsageServerAuth, "calc.test"},
		{devcerts.ClientCertFile, devcerts.ClientKeyFile, x509.ExtKeyUsageClientAuth, devcerts.ClientCommonName},
	} {
		t.Run(tc.cert, func(t *testing.T) {
			pair, err := tls.X509KeyPair(read(tc.cert), read(tc.key))
			if err != nil {
				t.Fatal(err)
			}
			opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tc.usage}}
			if tc.usage == x509.ExtKeyUsageServerAuth {
				opts.DNSName = tc.name
			} else if pair.Leaf.Subject.CommonName != tc.name {
				t.Fatalf("common name %q, want %q", pair.Leaf.Subject.CommonName, tc.name)
			}
			if _, err := pair.Leaf.Verify(opts); err != nil {
				t.Fatal(err)
			}
			if got := pair.Leaf.NotAfter.Sub(pair.Leaf.NotBefore); got != 48*time.Hour {
				t.Fatalf("valid for %v, want 48h", got)
			}
			fi, err := os.Stat(filepath.Join(dir, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v, want 0600", tc.key, fi.Mode().Perm())
			}
		})
	}
	if err := devcerts.WriteDir(dir, devcerts.Options{}); err == nil || !strings.Contains(err.Error(), "ca.pem exists") {
		t.Fatalf("second WriteDir: %v; want a refusal to overwrite", err)
	}
}

// TestExpired checks that NotAfter in the past makes an expired
// certificate.
func TestExpired(t *testing.T) {
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Server(devcerts.Options{NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Verify: %v; want expired", err)
	}
}
