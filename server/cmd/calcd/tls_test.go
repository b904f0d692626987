package main_test

import (
	"bytes"
	"crypto/tls"
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
	k := newDevPKI(t)
	caFile, clientCert, clientKey := k.caFile, k.clientCert, k.clientKey
	p := startCalcd(t, k.env()...)

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

	k.rotate(t, p)
	if out, errOut, code := calc("tcp", p.tcpAddr, "--tls-cert", clientCert, "--tls-key", clientKey, "1+1"); out != "2\n" || code != 0 {
		t.Fatalf("after the reload: %q %q exit %d", out, errOut, code)
	}
}

// TestTLSRotationUnderLoad swaps calcd's certificate files four times
// while calc-bench loads both transports over mutual TLS, with connections
// aged out every few hundred milliseconds so that handshakes keep
// happening across the swaps: every call succeeds, and each new
// handshake after a SIGHUP gets the new certificate.
func TestTLSRotationUnderLoad(t *testing.T) {
	k := newDevPKI(t)
	caFile, clientCert, clientKey := k.caFile, k.clientCert, k.clientKey
	p := startCalcd(t, append(k.env(), "CALCD_MAX_CONNECTION_AGE=300ms", "CALCD_LOG_LEVEL=info")...)

	type run struct {
		transport string
		out       bytes.Buffer
		err       error
	}
	runs := []*run{{transport: "tcp"}, {transport: "grpc"}}
	done := make(chan struct{})
	for _, r := range runs {
		addr := p.tcpAddr
		if r.transport == "grpc" {
			addr = p.grpcAddr
		}
		cmd := exec.Command(filepath.Join(bin, "calc-bench"), "--transport", r.transport, "--addr", addr,
			"--tls-ca", caFile, "--tls-cert", clientCert, "--tls-key", clientKey,
			"--conns", "4", "--concurrency", "8", "--warmup", "0s", "--duration", "3s", "--count", "2000000")
		cmd.Stdout, cmd.Stderr = &r.out, &r.out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			r.err = cmd.Wait()
			done <- struct{}{}
		}()
	}

	clientCfg := &tls.Config{RootCAs: k.ca.Pool(), NextProtos: []string{"calc/1"}}
	pair, err := k.client.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	clientCfg.Certificates = []tls.Certificate{pair}
	for i := range 4 {
		time.Sleep(400 * time.Millisecond)
		next := k.rotate(t, p)
		conn, err := tls.Dial("tcp", p.tcpAddr, clientCfg)
		if err != nil {
			t.Fatalf("rotation %d: a new handshake: %v", i, err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
		conn.Close()
		if got != next.Serial.String() {
			t.Errorf("rotation %d: a new handshake got serial %s, want %s", i, got, next.Serial)
		}
	}
	for range runs {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("calc-bench did not finish")
		}
	}
	for _, r := range runs {
		if r.err != nil || !strings.Contains(r.out.String(), "errors      none") {
			t.Errorf("%s: calc-bench across four certificate rotations: %v\n%s", r.transport, r.err, r.out.String())
		}
		t.Logf("%s:\n%s", r.transport, r.out.String())
	}
}

// devPKI is a development CA with a server and a client certificate,
// written to files for calcd and its clients.
type devPKI struct {
	ca                        *devcerts.CA
	client                    *devcerts.Pair
	dir                       string
	caFile, certFile, keyFile string
	clientCert, clientKey     string
}

func newDevPKI(t *testing.T) *devPKI {
	t.Helper()
	ca, err := devcerts.NewCA(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := &devPKI{ca: ca, client: client, dir: t.TempDir()}
	k.caFile = k.write(t, "ca.pem", ca.CertPEM)
	k.clientCert, k.clientKey = k.write(t, "client.pem", client.CertPEM), k.write(t, "client-key.pem", client.KeyPEM)
	k.certFile, k.keyFile = filepath.Join(k.dir, "server.pem"), filepath.Join(k.dir, "server-key.pem")
	k.issueServer(t)
	return k
}

// env configures calcd for TLS with k's server certificate, requiring
// client certificates of k's CA.
func (k *devPKI) env() []string {
	return []string{"CALCD_TLS_CERT=" + k.certFile, "CALCD_TLS_KEY=" + k.keyFile, "CALCD_TLS_CLIENT_CA=" + k.caFile}
}

func (k *devPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(k.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issueServer writes a new server certificate over the files calcd serves.
func (k *devPKI) issueServer(t *testing.T) *devcerts.Pair {
	t.Helper()
	server, err := k.ca.Server(devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k.write(t, "server.pem", server.CertPEM)
	k.write(t, "server-key.pem", server.KeyPEM)
	return server
}

// rotate writes a new server certificate, sends calcd SIGHUP and waits
// (at most 10 s) until calcd logs that it serves the new serial.
func (k *devPKI) rotate(t *testing.T, p *process) *devcerts.Pair {
	t.Helper()
	next := k.issueServer(t)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := `"serial":"` + next.Serial.String() + `"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.logs.String(), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload of serial %s logged:\n%s", next.Serial, p.logs.String())
		}
	}
	return next
}
