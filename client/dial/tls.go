package dial

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLS is the client's TLS configuration, as the --tls flags set it. Any
// of its fields turns TLS on.
type TLS struct {
	// Enabled turns TLS on, trusting the system's roots unless CAFile is
	// set (--tls).
	Enabled bool
	// CAFile is a PEM file of the CA certificates to trust instead of the
	// system's (--tls-ca).
	CAFile string
	// CertFile and KeyFile are the client certificate and its key, for a
	// server that requires mutual TLS (--tls-cert, --tls-key).
	CertFile, KeyFile string
	// ServerName is the name to verify the server's certificate against;
	// empty means the host of the address (--tls-server-name).
	ServerName string
}

// addFlags registers the --tls flags on fs, setting t's fields.
func (t *TLS) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&t.Enabled, "tls", false, "connect over TLS 1.3, trusting the system's roots (implied by the other --tls flags)")
	fs.StringVar(&t.CAFile, "tls-ca", "", "PEM `file` of the CA certificates to trust instead of the system's")
	fs.StringVar(&t.CertFile, "tls-cert", "", "PEM client certificate `file`, for mutual TLS (with --tls-key)")
	fs.StringVar(&t.KeyFile, "tls-key", "", "PEM private key `file` of --tls-cert")
	fs.StringVar(&t.ServerName, "tls-server-name", "", "`name` to verify the server's certificate against (default: the host of --addr)")
}

// on reports whether any field asks for TLS.
func (t TLS) on() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Config loads t's files into a client configuration requiring TLS 1.3,
// or returns nil when TLS is off.
func (t TLS) Config() (*tls.Config, error) {
	if !t.on() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// grpcCredentials returns the gRPC transport credentials for cfg: TLS, or
// insecure when cfg is nil.
func grpcCredentials(cfg *tls.Config) credentials.TransportCredentials {
	if cfg == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(cfg)
}
