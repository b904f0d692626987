// Package tlsconfig is calcd's TLS configuration: a certificate and key,
// and optionally a client CA for mutual TLS, loaded from PEM files into
// one *tls.Config that every port serves (the raw TCP and gRPC endpoints
// each clone it to set their ALPN protocol), and reloaded from the same
// files without a restart.
//
// The Config asks a Reloader for the current certificate at every
// handshake (GetCertificate) and, with a client CA, for the current CA pool
// (GetConfigForClient), so a reload applies to the next handshake on every
// port while connections already established carry on. Reload reads the
// files again; when one of them is bad (unreadable, not PEM, a key that
// does not match the certificate) it logs the error and keeps what it had.
// calcd reloads on SIGHUP and when Watch sees a file change.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often Watch looks at the files when
// Options.PollInterval is 0.
const DefaultPollInterval = 5 * time.Second

// Files names the PEM files of a TLS configuration.
type Files struct {
	// Cert is the certificate chain, leaf first.
	Cert string
	// Key is the certificate's private key.
	Key string
	// ClientCA, when set, holds the CA certificates that client
	// certificates must chain to: every client must present one (mutual
	// TLS). Empty means clients are not asked for certificates.
	ClientCA string
}

// Options configures a Reloader. The zero value means the documented
// defaults.
type Options struct {
	// Logger receives reloads and their failures; nil means
	// slog.Default(). Key material is never logged.
	Logger *slog.Logger
	// PollInterval is how often Watch compares the files' modification
	// times and sizes with those of the last load; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
}

// Reloader holds the current certificate and client CA pool, loaded from
// Files, and the one *tls.Config that serves them. It is safe for
// concurrent use.
type Reloader struct {
	files  Files
	logger *slog.Logger
	poll   time.Duration
	config *tls.Config

	cert   atomic.Pointer[tls.Certificate]
	client atomic.Pointer[tls.Config] // the Config for a client hello, with the current CA pool; nil without ClientCA

	mu     sync.Mutex // serialises loads
	stamps []stamp    // the files as they were when last loaded
}

// stamp is what Watch compares to see a file change.
type stamp struct {
	modTime time.Time
	size    int64
}

// New loads files and returns a Reloader serving them. It fails if a file
// is unreadable or invalid.
func New(files Files, opts Options) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tlsconfig: both a certificate and a key file are needed")
	}
	r := &Reloader{files: files, logger: opts.Logger, poll: opts.PollInterval}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	if r.poll == 0 {
		r.poll = DefaultPollInterval
	}
	r.config = &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: r.getCertificate,
	}
	if files.ClientCA != "" {
		r.config.ClientAuth = tls.RequireAndVerifyClientCert
		r.config.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.client.Load(), nil }
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// Config returns the server configuration: TLS 1.3 at least, the current
// certificate and, with a client CA, client certificates required and
// verified against the current pool. It is shared: clone it to change it
// (a server sets NextProtos on its clone).
func (r *Reloader) Config() *tls.Config { return r.config }

// Certificate returns the certificate being served.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

func (r *Reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Reload reads the files again. New handshakes get the new certificate and
// client CA pool; established connections are not affected. If a file is
// bad, Reload logs the error and returns it, and the Reloader keeps
// serving what it had.
func (r *Reloader) Reload() error {
	if err := r.load(); err != nil {
		r.logger.Error("TLS reload failed; still serving the previous certificate", "error", err)
		return err
	}
	cert := r.cert.Load()
	r.logger.Info("TLS certificate loaded", "subject", cert.Leaf.Subject.String(),
		"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	return nil
}

// load reads and installs the files, all or nothing.
func (r *Reloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamps = r.stat() // before reading: a change meanwhile is seen next time
	cert, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
	if err != nil {
		return fmt.Errorf("tlsconfig: loading %s and %s: %w", r.files.Cert, r.files.Key, err)
	}
	if len(cert.Certificate) == 0 || cert.Leaf == nil {
		return fmt.Errorf("tlsconfig: %s holds no certificate", r.files.Cert)
	}
	var client *tls.Config
	if r.files.ClientCA != "" {
		pem, err := os.ReadFile(r.files.ClientCA)
		if err != nil {
			return fmt.Errorf("tlsconfig: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tlsconfig: %s holds no PEM certificate", r.files.ClientCA)
		}
		client = r.config.Clone()
		client.GetConfigForClient = nil
		client.ClientCAs = pool
	}
	r.cert.Store(&cert)
	if client != nil {
		r.client.Store(client)
	}
	return nil
}

// stat returns the files' stamps; a file that cannot be read has the zero
// stamp.
func (r *Reloader) stat() []stamp {
	var out []stamp
	for _, name := range []string{r.files.Cert, r.files.Key, r.files.ClientCA} {
		var s stamp
		if fi, err := os.Stat(name); name != "" && err == nil {
			s = stamp{fi.ModTime(), fi.Size()}
		}
		out = append(out, s)
	}
	return out
}

// changed reports whether a file's stamp differs from the last load's.
func (r *Reloader) changed() bool {
	now := r.stat()
	r.mu.Lock()
	defer r.mu.Unlock()
	return !slices.EqualFunc(now, r.stamps, func(a, b stamp) bool { return a.modTime.Equal(b.modTime) && a.size == b.size })
}

// Watch reloads when a file changes, until ctx ends: every PollInterval it
// compares each file's modification time and size with the last load's,
// which costs three stat calls. A file replaced in several steps may be
// caught half-written; that reload fails, is logged, and the next poll
// after the last step succeeds. Watch blocks; run it in a goroutine.
func (r *Reloader) Watch(ctx context.Context) {
	t := time.NewTicker(r.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.changed() {
				_ = r.Reload() // logged
			}
		}
	}
}
