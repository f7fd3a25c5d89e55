package certs

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

const (
	fileRA       = "scep-ra.pem"
	fileRAKey    = "scep-ra.key.sealed"
	purposeRAKey = "ca/scep-ra.key"
	raKeyBits    = 2048 // what Apple's SCEP client handles everywhere
	raCommonName = "Hale SCEP RA"
)

// SCEPRA returns the SCEP registration authority: an RSA certificate issued by the intermediate
// with digitalSignature and keyEncipherment, and its key. Both are made on first use, the key
// sealed at rest; the certificate is reissued for the same key when a third of its lifetime or
// less remains.
func (a *Authority) SCEPRA() (*x509.Certificate, *rsa.PrivateKey, error) {
	a.raMu.Lock()
	defer a.raMu.Unlock()
	if a.raCert == nil {
		if err := a.loadRA(); err != nil {
			return nil, nil, err
		}
	}
	now := a.now()
	lifetime := a.raCert.NotAfter.Sub(a.raCert.NotBefore)
	if now.Add(lifetime/3).After(a.raCert.NotAfter) || now.Before(a.raCert.NotBefore) {
		if err := a.issueRA(a.raKey); err != nil {
			return nil, nil, err
		}
	}
	return a.raCert, a.raKey, nil
}

func (a *Authority) loadRA() error {
	sealed, err := os.ReadFile(a.path(fileRAKey))
	if errors.Is(err, fs.ErrNotExist) {
		key, err := rsa.GenerateKey(rand.Reader, raKeyBits)
		if err != nil {
			return err
		}
		// The certificate first: a key file without a certificate is replaced on the next try.
		if err := a.issueRA(key); err != nil {
			return err
		}
		if err := writeFileAtomic(a.path(fileRAKey), a.key.Seal(purposeRAKey, x509.MarshalPKCS1PrivateKey(key)), 0o600); err != nil {
			a.raCert, a.raKey = nil, nil
			return err
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("certs: read SCEP RA key: %w", err)
	}
	der, err := a.key.Open(purposeRAKey, sealed)
	if err != nil {
		return fmt.Errorf("certs: cannot open %s: wrong master key or damaged file: %w", fileRAKey, err)
	}
	key, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return fmt.Errorf("certs: parse SCEP RA key: %w", err)
	}
	cert, err := readCert(a.path(fileRA))
	if err != nil || !key.PublicKey.Equal(cert.PublicKey) || cert.CheckSignatureFrom(a.inter) != nil {
		// Missing, foreign or stale: issue a new one for the key.
		return a.issueRA(key)
	}
	a.raCert, a.raKey = cert, key
	return nil
}

func (a *Authority) issueRA(key *rsa.PrivateKey) error {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: raCommonName}}, key)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return err
	}
	chain, err := a.Sign(context.Background(), csr, Profile{Kind: kindSCEPRA, DeviceID: raCommonName})
	if err != nil {
		return fmt.Errorf("certs: issue SCEP RA certificate: %w", err)
	}
	if err := writeFileAtomic(a.path(fileRA), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw}), 0o600); err != nil {
		return err
	}
	a.raCert, a.raKey = chain[0], key
	a.logger.Info("issued SCEP RA certificate", "not_after", chain[0].NotAfter.Format(time.RFC3339))
	return nil
}
