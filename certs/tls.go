package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"sync"
	"time"
)

// maxPeerChain bounds the certificates a client may present.
const maxPeerChain = 4

// renewRetry is how long a failed server certificate renewal waits before the next try.
const renewRetry = time.Minute

// ServerCert is the server's own TLS certificate, issued by this CA and renewed when two thirds
// of its lifetime have passed. Use GetCertificate as tls.Config.GetCertificate.
type ServerCert struct {
	a     *Authority
	names []string

	mu        sync.Mutex
	cert      *tls.Certificate
	renewAt   time.Time
	lastTry   time.Time
	renewing  bool
	renewDone chan struct{}
}

// ServerCertificate issues a TLS server certificate for names (DNS names or IP addresses) with a
// fresh ECDSA P-256 key kept only in memory.
func (a *Authority) ServerCertificate(names []string) (*ServerCert, error) {
	s := &ServerCert{a: a, names: append([]string(nil), names...)}
	c, err := s.issue()
	if err != nil {
		return nil, err
	}
	s.set(c)
	return s, nil
}

func (s *ServerCert) issue() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.names[0]}}, key)
	if err != nil {
		return nil, fmt.Errorf("certs: server CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	chain, err := s.a.Sign(context.Background(), csr, Profile{Kind: KindServer, Names: s.names})
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, crt := range chain {
		c.Certificate = append(c.Certificate, crt.Raw)
	}
	return c, nil
}

func (s *ServerCert) set(c *tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cert = c
	s.renewAt = c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) * 2 / 3)
}

// Leaf returns the current server certificate.
func (s *ServerCert) Leaf() *x509.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert.Leaf
}

// GetCertificate returns the current certificate. Past two thirds of its lifetime it starts a
// renewal in the background and keeps serving the current one until the new one is ready; an
// expired certificate is renewed before the handshake continues.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := s.a.now()
	s.mu.Lock()
	c := s.cert
	due := !now.Before(s.renewAt) && now.Sub(s.lastTry) >= renewRetry
	expired := !now.Before(c.Leaf.NotAfter)
	var done chan struct{}
	switch {
	case s.renewing:
		done = s.renewDone
	case due || expired:
		s.renewing, s.lastTry = true, now
		s.renewDone = make(chan struct{})
		done = s.renewDone
		go s.renew(done)
	}
	s.mu.Unlock()
	if !expired || done == nil {
		return c, nil
	}
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.cert.Leaf.NotAfter) {
		return nil, errors.New("certs: server certificate expired and could not be renewed")
	}
	return s.cert, nil
}

func (s *ServerCert) renew(done chan struct{}) {
	defer close(done)
	c, err := s.issue()
	if err != nil {
		s.a.logger.Error("renew server certificate", "err", err, "retry_in", renewRetry)
	} else {
		s.set(c)
		s.a.logger.Info("renewed server certificate", "names", s.names, "not_after", c.Leaf.NotAfter)
	}
	s.mu.Lock()
	s.renewing = false
	s.mu.Unlock()
}

// ConfigureClientAuth sets up cfg to ask clients for a certificate and to refuse, during the
// handshake, any client certificate that does not chain to this CA's root, is not valid now,
// lacks client-auth usage, or is revoked. A client without a certificate still connects; the
// handler decides whether that is allowed (use ClientIdentity).
//
// Go's own client verification is not used (ClientAuth is RequestClientCert) because Apple
// devices send their leaf without the intermediate; VerifyConnection verifies instead, and it
// also runs on resumed sessions, so a revocation takes effect on the next handshake.
func (a *Authority) ConfigureClientAuth(cfg *tls.Config) {
	cfg.ClientAuth = tls.RequestClientCert
	// Named in the CertificateRequest so clients pick the right identity. The intermediate is
	// listed too: a client holding only its leaf matches on the leaf's issuer.
	cfg.ClientCAs = a.advertisedCAs
	cfg.VerifyConnection = a.VerifyConnection
}

// VerifyConnection is a tls.Config.VerifyConnection that checks a presented client certificate
// with VerifyClientCert. A connection without a client certificate passes.
func (a *Authority) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	return a.VerifyClientCert(cs.PeerCertificates)
}

// VerifyClientCert checks that chain[0] was issued by this CA's intermediate, is valid now, is
// meant for client authentication and is not revoked. chain[1:] may hold the intermediate; it
// is not required.
func (a *Authority) VerifyClientCert(chain []*x509.Certificate) error {
	if len(chain) == 0 || len(chain) > maxPeerChain {
		return fmt.Errorf("%w: expected 1 to %d certificates, got %d", ErrNotTrusted, maxPeerChain, len(chain))
	}
	return a.verifyLeaf(chain[0], chain[1:], x509.ExtKeyUsageClientAuth)
}

func (a *Authority) verifyLeaf(leaf *x509.Certificate, extra []*x509.Certificate, usage x509.ExtKeyUsage) error {
	pool := a.interPool
	if len(extra) > 0 {
		pool = a.interPool.Clone()
		for _, c := range extra {
			pool.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         a.rootPool,
		Intermediates: pool,
		CurrentTime:   a.now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return fmt.Errorf("%w: %v", ErrNotTrusted, err)
	}
	if a.isRevoked(leaf.SerialNumber.String()) {
		return fmt.Errorf("%w: serial %s", ErrRevoked, leaf.SerialNumber)
	}
	return nil
}

// Identity is a verified client certificate.
type Identity struct {
	// DeviceID is the certificate's subject common name.
	DeviceID    string
	Certificate *x509.Certificate
}

// ClientIdentity verifies the client certificate of a connection again (it may have been revoked
// since the handshake of a kept-alive connection) and returns who it names. It returns an error
// wrapping ErrNotTrusted or ErrRevoked, or ErrNoClientCert when the client sent none.
func (a *Authority) ClientIdentity(cs *tls.ConnectionState) (*Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, ErrNoClientCert
	}
	if err := a.VerifyClientCert(cs.PeerCertificates); err != nil {
		return nil, err
	}
	leaf := cs.PeerCertificates[0]
	return &Identity{DeviceID: leaf.Subject.CommonName, Certificate: leaf}, nil
}

// ErrNoClientCert is returned by ClientIdentity when the client presented no certificate.
var ErrNoClientCert = errors.New("certs: no client certificate presented")
