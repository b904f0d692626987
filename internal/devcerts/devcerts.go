// Package devcerts makes a development certificate authority and the
// certificates it signs, in memory: ECDSA P-256 keys, a server certificate
// for a list of host names and IP addresses and a client certificate for
// mutual TLS. Tests use it to run calc over real TLS; the devcerts tool
// (tools/devcerts) writes the same files to a directory. Its certificates
// are for development and tests only: the CA's key never leaves the
// process that made it unless written with WriteDir.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DefaultHosts are the names a server certificate is issued for when
// Options.Hosts is empty: the loopback host names and addresses.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// DefaultValidity is how long certificates are valid when
// Options.Validity is 0.
const DefaultValidity = 365 * 24 * time.Hour

// ClientCommonName is the common name of client certificates when
// Options.CommonName is empty.
const ClientCommonName = "calc-dev-client"

// Options configures a certificate. The zero value means the documented
// defaults.
type Options struct {
	// Hosts are a server certificate's subject alternative names, DNS
	// names and IP addresses; empty means DefaultHosts. Client
	// certificates ignore it.
	Hosts []string
	// CommonName is the subject's common name; empty means
	// "calc-dev-ca", "calc-dev-server" or ClientCommonName.
	CommonName string
	// Validity is how long the certificate is valid from an hour ago (for
	// clock skew); 0 means DefaultValidity.
	Validity time.Duration
	// NotAfter, when set, is the end of the certificate's validity
	// instead, which may be in the past: an expired certificate, for
	// tests.
	NotAfter time.Time
}

// CA is a certificate authority.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	// CertPEM is Cert, PEM-encoded.
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// Pair is a certificate and its private key, both PEM-encoded.
type Pair struct {
	// CertPEM is the certificate.
	CertPEM []byte
	// KeyPEM is the private key (PKCS #8).
	KeyPEM []byte
	// Serial is the certificate's serial number.
	Serial *big.Int
}

// NewCA makes a new certificate authority with a fresh key.
func NewCA(opts Options) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(opts, "calc-dev-ca")
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Server issues a server certificate for opts.Hosts.
func (ca *CA) Server(opts Options) (*Pair, error) {
	tmpl, err := template(opts, "calc-dev-server")
	if err != nil {
		return nil, err
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.issue(tmpl)
}

// Client issues a client certificate, for mutual TLS.
func (ca *CA) Client(opts Options) (*Pair, error) {
	tmpl, err := template(opts, ClientCommonName)
	if err != nil {
		return nil, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl)
}

// issue signs tmpl for a fresh key.
func (ca *CA) issue(tmpl *x509.Certificate) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Serial:  tmpl.SerialNumber,
	}, nil
}

// TLSCertificate returns the pair as a tls.Certificate.
func (p *Pair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(p.CertPEM, p.KeyPEM)
}

// template returns a certificate template with a random serial and the
// validity opts ask for.
func template(opts Options, defaultName string) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	name := opts.CommonName
	if name == "" {
		name = defaultName
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	notBefore := time.Now().Add(-time.Hour)
	notAfter := opts.NotAfter
	if notAfter.IsZero() {
		notAfter = notBefore.Add(validity)
	}
	if !notAfter.After(notBefore) {
		notBefore = notAfter.Add(-24 * time.Hour)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"calc development"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}, nil
}

// Files are the names WriteDir gives the files it writes.
const (
	CAFile         = "ca.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
	ClientCertFile = "client.pem"
	ClientKeyFile  = "client-key.pem"
)

// WriteDir makes a new CA, a server certificate for opts.Hosts and a
// client certificate, all valid for opts.Validity, and writes them to dir
// (made if missing) as CAFile, ServerCertFile, ServerKeyFile,
// ClientCertFile and ClientKeyFile. Keys are written with mode 0600; the
// CA's key is not written, so no more certificates can be issued from it.
// WriteDir refuses to overwrite existing files.
func WriteDir(dir string, opts Options) error {
	ca, err := NewCA(Options{Validity: opts.Validity, NotAfter: opts.NotAfter})
	if err != nil {
		return err
	}
	server, err := ca.Server(opts)
	if err != nil {
		return err
	}
	client, err := ca.Client(Options{Validity: opts.Validity, NotAfter: opts.NotAfter})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, ca.CertPEM, 0o644},
		{ServerCertFile, server.CertPEM, 0o644},
		{ServerKeyFile, server.KeyPEM, 0o600},
		{ClientCertFile, client.CertPEM, 0o644},
		{ClientKeyFile, client.KeyPEM, 0o600},
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f.name)); err == nil {
			return fmt.Errorf("devcerts: %s exists; remove it or choose another directory", filepath.Join(dir, f.name))
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
