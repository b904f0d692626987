package main_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calcrpc/calc/internal/devcerts"
)

// TestProtectedMode checks that calcd refuses to listen on every
// interface without TLS and authentication: it exits 2 before it binds anything.
func TestProtectedMode(t *testing.T) {
	cmd := exec.Command(filepath.Join(bin, "calcd"), "--tcp-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0")
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("calcd exited with %v, want exit status 2:\n%s", err, out)
	}
	want := "calcd: protected mode: refusing to listen on --tcp-addr 0.0.0.0:0, reachable from the network, without TLS and authentication: give --tls-cert and --tls-key, and --auth-tokens or --tls-client-ca; listen on a loopback address; or accept the risk with --insecure-listen\n"
	if !strings.HasSuffix(string(out), want) || strings.Contains(string(out), `"listening"`) {
		t.Fatalf("output:\n%s\nwant it to end with:\n%s", out, want)
	}
}

// TestTLSCLI serves mutual TLS from files and calls it with calc over both
// transports; a client without its certificate is refused; SIGHUP
// reloads a new certificate.
func TestTLSCLI(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile := file("ca.pem", ca.CertPEM)
	certFile, keyFile := file("server.pem", server.CertPEM), file("server-key.pem", server.KeyPEM)
	clientCert, clientKey := file("client.pem", client.CertPEM), file("client-key.pem", client.KeyPEM)
	p := startCalcd(t, "CALCD_TLS_CERT="+certFile, "CALCD_TLS_KEY="+keyFile, "CALCD_TLS_CLIENT_CA="+caFile)

	calc := func(transport, addr string, args ...string) (string, string, int) {
		cmd := exec.Command(filepath.Join(bin, "calc"), append([]string{"--transport", transport, "--addr", addr, "--tls-ca", caFile}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return stdout.String(), stderr.String(), exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), 0
	}
	for _, tc := range []struct{ transport, addr string }{{"tcp", p.tcpAddr}, {"grpc", p.grpcAddr}} {
		t.Run(tc.transport, func(t *testing.T) {
			if out, errOut, code := calc(tc.transport, tc.addr, "--tls-cert", clientCert, "--tls-key", clientKey, "2+3"); out != "5\n" || code != 0 {
				t.Fatalf("with a client certificate: %q %q exit %d", out, errOut, code)
			}
			if out, errOut, code := calc(tc.transport, tc.addr, "2+3"); code != 1 || !strings.HasPrefix(errOut, "calc: UNAVAILABLE: ") {
				t.Fatalf("without a client certificate: %q %q exit %d; want exit 1 with UNAVAILABLE", out, errOut, code)
			}
		})
	}

	next, err := ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	file("server.pem", next.CertPEM)
	file("server-key.pem", next.KeyPEM)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := `"serial":"` + next.Serial.String() + `"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload of serial %s logged:\n%s", next.Serial, p.logs.String())
		}
	}
	if out, errOut, code := calc("tcp", p.tcpAddr, "--tls-cert", clientCert, "--tls-key", clientKey, "1+1"); out != "2\n" || code != 0 {
		t.Fatalf("after the reload: %q %q exit %d", out, errOut, code)
	}
}
