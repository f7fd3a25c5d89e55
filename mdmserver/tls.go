package mdmserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
)

// serverNames are the DNS names and IPs the server's certificate must name.
func serverNames(cfg Config) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
		names = append(names, host)
	}
	if u, err := url.Parse(cfg.PublicURL); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	names = append(names, cfg.Names...)
	slices.Sort(names)
	return slices.Compact(names)
}

// TLSConfig returns the TLS configuration the server listens with: a certificate from the
// embedded CA (renewed before expiry), and client certificates requested but optional (agents
// and Apple devices present one; the admin API uses bearer tokens). A presented certificate is
// verified in the handshake: Hale's CA (not revoked, not expired) or, when configured, one of
// the extra device CAs. Anything else fails the handshake.
func (s *Server) TLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.serverCert.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	s.ca.ConfigureClientAuth(cfg)
	if s.extraDeviceCAs != nil {
		hale := cfg.VerifyConnection
		cfg.ClientCAs = cfg.ClientCAs.Clone()
		for _, c := range s.extraDeviceCACerts {
			cfg.ClientCAs.AddCert(c)
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			err := hale(cs)
			if err != nil && s.verifyExtraDeviceCA(cs.PeerCertificates) == nil {
				return nil
			}
			return err
		}
	}
	return cfg
}

// RootCAs returns a pool holding Hale's root: what clients trust the server with.
func (s *Server) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ca.Root())
	return p
}

// loadExtraDeviceCAs reads Config.MDMCAFile: CAs, other than Hale's, whose client certificates
// identify devices (an existing MDM's SCEP CA during a migration, for example).
func (s *Server) loadExtraDeviceCAs() error {
	if s.cfg.MDMCAFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.MDMCAFile)
	if err != nil {
		return fmt.Errorf("read mdm_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	for rest := b; ; {
		var cert *x509.Certificate
		cert, rest, err = nextPEMCert(rest)
		if err != nil {
			return fmt.Errorf("mdm_ca_file %s: %w", s.cfg.MDMCAFile, err)
		}
		if cert == nil {
			break
		}
		pool.AddCert(cert)
		s.extraDeviceCACerts = append(s.extraDeviceCACerts, cert)
	}
	if len(s.extraDeviceCACerts) == 0 {
		return fmt.Errorf("mdm_ca_file %s holds no PEM certificate", s.cfg.MDMCAFile)
	}
	s.extraDeviceCAs = pool
	return nil
}

// nextPEMCert returns the first certificate in b and the rest; a nil certificate means none is left.
func nextPEMCert(b []byte) (*x509.Certificate, []byte, error) {
	for {
		block, rest := pem.Decode(b)
		if block == nil {
			return nil, nil, nil
		}
		if block.Type != "CERTIFICATE" {
			b = rest
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		return c, rest, err
	}
}

func (s *Server) verifyExtraDeviceCA(chain []*x509.Certificate) error {
	if s.extraDeviceCAs == nil || len(chain) == 0 {
		return errors.New("no extra device CA configured")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: s.extraDeviceCAs, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}
