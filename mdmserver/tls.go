package mdmserver

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
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/halemdm/hale/internal/seal"
)

// tlsIdentity is the server's TLS certificate. Until the embedded CA issues it, it is a
// self-signed certificate kept in DATA/tls (key sealed), made once and reused.
type tlsIdentity struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

func (t *tlsIdentity) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return t.cert, nil
}

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

func newTLSIdentity(cfg Config, key *seal.Key) (*tlsIdentity, error) {
	dir := cfg.path("tls")
	certPath, keyPath := dir+"/server.crt", dir+"/server.key.sealed"
	names := serverNames(cfg)
	certPEM, errC := os.ReadFile(certPath)
	sealed, errK := os.ReadFile(keyPath)
	if errC == nil && errK == nil {
		keyPEM, err := key.Open("tls/server.key", sealed)
		if err != nil {
			return nil, fmt.Errorf("open TLS key: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err == nil && coversNames(pair.Leaf, names) && time.Until(pair.Leaf.NotAfter) > 30*24*time.Hour {
			return identityFrom(&pair), nil
		}
	} else if !errors.Is(errC, fs.ErrNotExist) && errC != nil {
		return nil, errC
	}
	certPEM, keyPEM, err := selfSigned(names)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, key.Seal("tls/server.key", keyPEM), 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return identityFrom(&pair), nil
}

func identityFrom(pair *tls.Certificate) *tlsIdentity {
	roots := x509.NewCertPool()
	roots.AddCert(pair.Leaf)
	return &tlsIdentity{cert: pair, roots: roots}
}

func coversNames(c *x509.Certificate, names []string) bool {
	for _, n := range names {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func selfSigned(names []string) (certPEM, keyPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Hale server", Organization: []string{"Hale"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, nil, err
	}
	kd, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), nil
}

// loadMDMRoots returns the CAs whose client certificates may check in at /mdm and talk mTLS.
func (s *Server) loadMDMRoots() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if s.cfg.MDMCAFile != "" {
		pem, err := os.ReadFile(s.cfg.MDMCAFile)
		if err != nil {
			return nil, fmt.Errorf("read mdm_ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mdm_ca_file %s holds no PEM certificate", s.cfg.MDMCAFile)
		}
	}
	return pool, nil
}
