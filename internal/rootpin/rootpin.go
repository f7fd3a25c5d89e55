// Package rootpin pins a Hale server's root CA by its SHA-256 fingerprint, the way an agent
// enrolling and mdmctl logging in first trust a server: fetch /ca/root.pem over an unverified
// connection, accept it only if its fingerprint is the one the user was given, then require the
// certificate the server presented to chain to it for the server's name.
package rootpin

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// MaxPEM bounds a /ca/root.pem answer.
const MaxPEM = 64 << 10

// ParseFingerprint normalizes a SHA-256 fingerprint: colons, spaces and dashes dropped, lower
// case, exactly 64 hex digits.
func ParseFingerprint(s string) (string, error) {
	f := strings.ToLower(strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s)))
	if b, err := hex.DecodeString(f); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("a CA fingerprint is a SHA-256: 64 hex digits, colons optional (got %q)", truncate(s))
	}
	return f, nil
}

// Fingerprint returns the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseRoot parses the first certificate of a PEM document and checks that it is a CA.
func ParseRoot(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("the server's /ca/root.pem is not a PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the server's /ca/root.pem does not parse: %w", err)
	}
	if !c.IsCA {
		return nil, errors.New("the server's /ca/root.pem is not a CA certificate")
	}
	return c, nil
}

// VerifyChain checks that chain, as a TLS server presented it, leads to root and names host.
func VerifyChain(chain []*x509.Certificate, root *x509.Certificate, host string) error {
	if len(chain) == 0 {
		return errors.New("the server presented no certificate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
