package main

import (
	"strings"
	"testing"

	"github.com/calcrpc/calc/server/tlsconfig"
)

// TestProtect is protected mode's decision, without binding anything.
func TestProtect(t *testing.T) {
	const local = "127.0.0.1:4000"
	withTLS := tlsconfig.Files{Cert: "server.pem", Key: "server-key.pem"}
	for _, tc := range []struct {
		name           string
		tcp, grpc      string
		http           string // "" for off
		tls            tlsconfig.Files
		authFile       string
		insecureListen bool
		err, warning   string // "" for none
	}{
		{name: "loopback", tcp: local, grpc: "[::1]:50051"},
		{name: "localhost", tcp: "localhost:4000", grpc: local},
		{name: "every interface", tcp: "0.0.0.0:4000", grpc: local,
			err: "protected mode: refusing to listen on --tcp-addr 0.0.0.0:4000, reachable from the network, without TLS and authentication: give --tls-cert and --tls-key, and --auth-tokens or --tls-client-ca; listen on a loopback address; or accept the risk with --insecure-listen"},
		{name: "empty host", tcp: local, grpc: ":50051", err: "refusing to listen on --grpc-addr :50051"},
		{name: "IPv6 any", tcp: "[::]:4000", grpc: local, err: "refusing to listen on --tcp-addr [::]:4000"},
		{name: "LAN address", tcp: "192.168.1.10:4000", grpc: local, err: "refusing to listen on --tcp-addr 192.168.1.10:4000"},
		{name: "host name", tcp: local, grpc: "calc.example:50051", err: "refusing to listen on --grpc-addr calc.example:50051"},
		{name: "TLS without authentication", tcp: "0.0.0.0:4000", grpc: ":50051", tls: withTLS, err: "without authentication:"},
		{name: "tokens without TLS", tcp: "0.0.0.0:4000", grpc: local, authFile: "auth.json", err: "without TLS:"},
		{name: "TLS and tokens", tcp: "0.0.0.0:4000", grpc: ":50051", tls: withTLS, authFile: "auth.json"},
		{name: "mutual TLS", tcp: "0.0.0.0:4000", grpc: ":50051", tls: tlsconfig.Files{Cert: "server.pem", Key: "server-key.pem", ClientCA: "ca.pem"}},
		{name: "HTTP off", tcp: local, grpc: local, http: ""},
		{name: "HTTP on loopback", tcp: local, grpc: local, http: "127.0.0.1:8080"},
		{name: "HTTP on every interface", tcp: local, grpc: local, http: "0.0.0.0:8080",
			err: "protected mode: refusing to listen on --http-addr 0.0.0.0:8080, reachable from the network, without TLS and authentication"},
		{name: "HTTP with TLS and tokens", tcp: local, grpc: local, http: ":8080", tls: withTLS, authFile: "auth.json"},
		{name: "override", tcp: "0.0.0.0:4000", grpc: local, insecureListen: true,
			warning: "--tcp-addr 0.0.0.0:4000 is reachable from the network without TLS and authentication (--insecure-listen)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warning, err := protect(config{tcpAddr: tc.tcp, grpcAddr: tc.grpc, httpAddr: tc.http, tls: tc.tls, authFile: tc.authFile, insecureListen: tc.insecureListen})
			switch {
			case tc.err == "" && err != nil, tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("protect: %v; want an error with %q", err, tc.err)
			case warning != tc.warning:
				t.Fatalf("warning %q, want %q", warning, tc.warning)
			}
		})
	}
}
