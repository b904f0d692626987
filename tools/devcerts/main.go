// Command devcerts writes a development certificate authority and
// certificates signed by it, for running calcd with TLS and mutual TLS on
// a development machine:
//
//	go run ./tools/devcerts -out DIR [-hosts localhost,127.0.0.1,::1] [-days 365]
//
// It writes, to DIR (made if missing; existing files are never
// overwritten):
//
//	ca.pem                          the CA certificate: clients trust it (calc --tls-ca), calcd checks client certificates against it (--tls-client-ca)
//	server.pem, server-key.pem      the server certificate, for the -hosts names and addresses (calcd --tls-cert, --tls-key)
//	client.pem, client-key.pem      a client certificate, common name calc-dev-client, for mutual TLS (calc --tls-cert, --tls-key)
//
// Keys are ECDSA P-256, written with mode 0600. The CA's own key is not
// written: to issue more certificates, run devcerts again. These
// certificates are for development only; production certificates come from
// your own CA or ACME.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/calcrpc/calc/internal/devcerts"
)

func main() {
	fs := flag.NewFlagSet("devcerts", flag.ContinueOnError)
	out := fs.String("out", "", "`directory` to write the certificates to (required)")
	hosts := fs.String("hosts", strings.Join(devcerts.DefaultHosts, ","), "comma-separated host names and IP addresses of the server certificate")
	days := fs.Int("days", 365, "validity in days")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *out == "" || *days <= 0 || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: devcerts -out DIR [-hosts localhost,127.0.0.1,::1] [-days 365]")
		os.Exit(2)
	}
	opts := devcerts.Options{Hosts: strings.Split(*hosts, ","), Validity: time.Duration(*days) * 24 * time.Hour}
	if err := devcerts.WriteDir(*out, opts); err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s, %s, %s, %s and %s to %s\n", devcerts.CAFile, devcerts.ServerCertFile, devcerts.ServerKeyFile, devcerts.ClientCertFile, devcerts.ClientKeyFile, *out)
}
