package applesim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"time"

	smscep "github.com/smallstep/scep"
	scepx509 "github.com/smallstep/scep/x509util"
)

// ErrSCEPFailed is returned when the SCEP server answers a PKCSReq with a failure CertRep.
var ErrSCEPFailed = errors.New("applesim: SCEP enrollment refused")

// EnrollFromProfile does what a device does when a user installs an enrollment profile: it
// obtains its identity over SCEP with the profile's challenge and subject (RSA key of the
// profile's size), then creates the device for the profile's MDM server, ready for Enroll. The
// client must trust the server's TLS certificate. opts are applied after the profile's own.
func EnrollFromProfile(ctx context.Context, client *http.Client, profile []byte, opts ...Option) (*Device, error) {
	ep, err := ParseEnrollmentProfile(profile)
	if err != nil {
		return nil, err
	}
	if ep.SCEP == nil {
		return nil, errors.New("applesim: enrollment profile has no SCEP payload")
	}
	cert, key, err := SCEPEnroll(ctx, client, ep.SCEP)
	if err != nil {
		return nil, err
	}
	all := append(ep.Options(), WithHTTPClient(client), WithIdentity(cert, key))
	return New(ep.ServerURL, append(all, opts...)...)
}

// SCEPEnroll requests an identity certificate as the SCEP payload p describes: GetCACert, then a
// PKCSReq signed with a self-signed certificate and encrypted to the RA, as Apple devices do.
func SCEPEnroll(ctx context.Context, client *http.Client, p *SCEPPayload) (*x509.Certificate, *rsa.PrivateKey, error) {
	size := p.KeySize
	if size == 0 {
		size = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, size)
	if err != nil {
		return nil, nil, err
	}
	var subject pkix.Name
	for _, rdn := range p.Subject {
		switch rdn[0] {
		case "CN":
			subject.CommonName = rdn[1]
		case "O":
			subject.Organization = append(subject.Organization, rdn[1])
		}
	}
	selfTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	selfDER, err := x509.CreateCertificate(rand.Reader, selfTmpl, selfTmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	self, _ := x509.ParseCertificate(selfDER)

	caBody, err := scepGet(ctx, client, p.URL, "GetCACert")
	if err != nil {
		return nil, nil, err
	}
	caCerts, err := smscep.CACerts(caBody)
	if err != nil {
		return nil, nil, fmt.Errorf("applesim: GetCACert: %w", err)
	}
	csrDER, err := scepx509.CreateCertificateRequest(rand.Reader, &scepx509.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.SHA256WithRSA},
		ChallengePassword:  p.Challenge,
	}, key)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	msg, err := smscep.NewCSRRequest(csr, &smscep.PKIMessage{
		MessageType: smscep.PKCSReq, Recipients: caCerts, SignerKey: key, SignerCert: self,
	}, smscep.WithCertsSelector(smscep.EnciphermentCertsSelector()))
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"?operation=PKIOperation", bytes.NewReader(msg.Raw))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/x-pki-message")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("applesim: PKIOperation: HTTP %d: %s", resp.StatusCode, body)
	}
	rep, err := smscep.ParsePKIMessage(body)
	if err != nil {
		return nil, nil, fmt.Errorf("applesim: CertRep: %w", err)
	}
	if rep.PKIStatus != smscep.SUCCESS {
		return nil, nil, fmt.Errorf("%w: status %v, failInfo %v", ErrSCEPFailed, rep.PKIStatus, rep.FailInfo)
	}
	if err := rep.DecryptPKIEnvelope(self, key); err != nil {
		return nil, nil, fmt.Errorf("applesim: decrypt CertRep: %w", err)
	}
	if rep.CertRepMessage == nil || rep.CertRepMessage.Certificate == nil {
		return nil, nil, errors.New("applesim: CertRep holds no certificate")
	}
	return rep.CertRepMessage.Certificate, key, nil
}

func scepGet(ctx context.Context, client *http.Client, base, op string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"?operation="+url.QueryEscape(op), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("applesim: %s: HTTP %d", op, resp.StatusCode)
	}
	return body, err
}
