package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/x509util"
)

// Kind says what a certificate is for; it fixes the lifetime and key usages.
type Kind int

// Certificate kinds.
const (
	// KindAgent is an mdmagent device identity: client auth, 90 days, renewed over mTLS.
	KindAgent Kind = iota + 1
	// KindAppleMDM is an Apple device identity enrolled over SCEP: client auth, one year.
	KindAppleMDM
	// KindServer is a TLS server certificate for the names in Profile.Names.
	KindServer
	// kindSCEPRA is the SCEP registration authority certificate (RSA, signs and decrypts).
	kindSCEPRA
)

// Lifetimes of issued certificates, before clamping to the intermediate's validity.
const (
	AgentLifetime    = 90 * 24 * time.Hour
	AppleMDMLifetime = 365 * 24 * time.Hour
	ServerLifetime   = 30 * 24 * time.Hour
	scepRALifetime   = 365 * 24 * time.Hour
)

// Limits on what a CSR or profile may carry.
const (
	maxDeviceIDLen = 128
	maxServerNames = 32
	minRSABits     = 2048
	maxRSABits     = 8192
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindAgent:
		return "agent"
	case KindAppleMDM:
		return "apple-mdm"
	case KindServer:
		return "server"
	case kindSCEPRA:
		return "scep-ra"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

func (k Kind) lifetime() time.Duration {
	switch k {
	case KindAgent:
		return AgentLifetime
	case KindAppleMDM:
		return AppleMDMLifetime
	case KindServer:
		return ServerLifetime
	case kindSCEPRA:
		return scepRALifetime
	}
	return 0
}

// Profile says what to issue. The subject and names come from here, never from the CSR.
type Profile struct {
	Kind Kind
	// DeviceID becomes the subject common name of a device identity (KindAgent, KindAppleMDM).
	DeviceID string
	// Names are the DNS names and IP addresses of a KindServer certificate.
	Names []string
}

// Errors returned by Sign and Renew. Callers map them to HTTP 400/403; other errors are internal.
var (
	// ErrBadRequest means the CSR or profile was refused; the error text says why.
	ErrBadRequest = errors.New("certs: certificate request refused")
	// ErrRevoked means the certificate has been revoked.
	ErrRevoked = errors.New("certs: certificate is revoked")
	// ErrNotTrusted means the certificate was not issued by this CA or is outside its validity.
	ErrNotTrusted = errors.New("certs: certificate is not valid for this CA")
)

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// CheckRequest reports whether Sign would accept csr for p, without signing anything: a caller
// that spends a one-time credential checks the CSR first, so that neither a refused CSR burns
// the credential nor an anonymous caller makes the CA sign (and then revoke) a certificate.
func CheckRequest(csr *x509.CertificateRequest, p Profile) error {
	if csr == nil {
		return badRequest("no certificate request")
	}
	if err := checkProfile(p); err != nil {
		return err
	}
	return checkCSR(csr, p)
}

// Sign issues a certificate for the CSR's public key as described by p and returns the leaf
// followed by the intermediate. The CSR must be signed by its key; its subject and SANs may only
// name p.DeviceID (device kinds) and are otherwise ignored: the certificate names what p says.
func (a *Authority) Sign(ctx context.Context, csr *x509.CertificateRequest, p Profile) ([]*x509.Certificate, error) {
	if err := CheckRequest(csr, p); err != nil {
		return nil, err
	}
	notBefore, notAfter, err := a.validity(p.Kind.lifetime())
	if err != nil {
		return nil, err
	}
	data := x509util.NewTemplateData()
	data.SetCertificateRequest(csr)
	var tmpl string
	switch p.Kind {
	case KindServer:
		data.SetCommonName(p.Names[0])
		data.SetSANs(p.Names)
		tmpl = serverTemplate
	case kindSCEPRA:
		data.SetCommonName(p.DeviceID)
		tmpl = raTemplate
	default:
		data.SetCommonName(p.DeviceID)
		tmpl = deviceTemplate
	}
	data.Set("CRL", a.crlURL)
	if oid, ok := kindOIDs[p.Kind]; ok {
		data.Set("KindPolicy", oid.String())
	}
	opts := []provisioner.SignOption{
		templateOption{x509util.WithTemplate(tmpl, data)},
		provisioner.CertificateModifierFunc(func(c *x509.Certificate, _ provisioner.SignOptions) error {
			c.NotBefore, c.NotAfter = notBefore, notAfter
			return nil
		}),
	}
	chain, err := a.auth.SignWithContext(ctx, csr, provisioner.SignOptions{}, opts...)
	if err != nil {
		return nil, fmt.Errorf("certs: sign %s certificate: %w", p.Kind, err)
	}
	a.logger.Info("issued certificate", "kind", p.Kind.String(), "subject", chain[0].Subject.CommonName,
		"serial", chain[0].SerialNumber.String(), "not_after", chain[0].NotAfter)
	return chain, nil
}

// The templates choose every field of an issued certificate; nothing is copied from the CSR
// except its public key (x509util enforces that).
const (
	deviceTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["keyEncipherment", "digitalSignature"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["clientAuth"],
	"policyIdentifiers": [{{ toJson .KindPolicy }}],
	"crlDistributionPoints": [{{ toJson .CRL }}]
}`
	serverTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["serverAuth"],
	"policyIdentifiers": [{{ toJson .KindPolicy }}]
}`
	raTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
	"keyUsage": ["keyEncipherment", "digitalSignature"]
}`
)

// templateOption hands a template to the smallstep authority's sign path.
type templateOption struct{ opt x509util.Option }

func (t templateOption) Options(provisioner.SignOptions) []x509util.Option {
	return []x509util.Option{t.opt}
}

// validity returns the validity window of a new certificate: lifetime from now, clamped to the
// intermediate's own validity so no leaf outlives its issuer.
func (a *Authority) validity(lifetime time.Duration) (time.Time, time.Time, error) {
	now := a.now()
	nb, na := now.Add(-backdate), now.Add(lifetime)
	if nb.Before(a.inter.NotBefore) {
		nb = a.inter.NotBefore
	}
	if na.After(a.inter.NotAfter) {
		na = a.inter.NotAfter
	}
	if !na.After(now) || !nb.Before(na) {
		return time.Time{}, time.Time{}, fmt.Errorf("certs: the intermediate CA is not valid now (valid %s to %s); rotate the CA",
			a.inter.NotBefore.Format(time.RFC3339), a.inter.NotAfter.Format(time.RFC3339))
	}
	return nb, na, nil
}

func checkProfile(p Profile) error {
	switch p.Kind {
	case KindAgent, KindAppleMDM, kindSCEPRA:
		if p.DeviceID == "" || len(p.DeviceID) > maxDeviceIDLen || !utf8.ValidString(p.DeviceID) ||
			strings.IndexFunc(p.DeviceID, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return badRequest("device ID must be 1 to %d printable characters", maxDeviceIDLen)
		}
	case KindServer:
		if len(p.Names) == 0 || len(p.Names) > maxServerNames {
			return badRequest("a server certificate needs 1 to %d names", maxServerNames)
		}
		for _, n := range p.Names {
			if net.ParseIP(n) == nil && !validDNSName(n) {
				return badRequest("server name %q is neither an IP address nor a DNS name", n)
			}
		}
	default:
		return badRequest("unknown certificate kind %d", int(p.Kind))
	}
	return nil
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i, r := range label {
			ok := r == '-' && i > 0 && i < len(label)-1 || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
				r == '*' && i == 0 && len(label) == 1
			if !ok {
				return false
			}
		}
	}
	return true
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// checkCSR refuses a CSR with a bad signature, a weak or unknown key, or a subject or SAN that
// names anyone but the device.
func checkCSR(csr *x509.CertificateRequest, p Profile) error {
	if err := checkPublicKey(csr); err != nil {
		return err
	}
	if err := csr.CheckSignature(); err != nil {
		return badRequest("CSR signature does not verify: %v", err)
	}
	if p.Kind == KindServer || p.Kind == kindSCEPRA {
		return nil
	}
	for _, atv := range csr.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			continue
		}
		if cn, ok := atv.Value.(string); !ok || cn != p.DeviceID {
			return badRequest("CSR subject common name %q is not the device ID", fmt.Sprint(atv.Value))
		}
	}
	for _, n := range csr.DNSNames {
		if n != p.DeviceID {
			return badRequest("CSR names DNS %q, not the device ID", n)
		}
	}
	for _, u := range csr.URIs {
		if u.String() != p.DeviceID {
			return badRequest("CSR names URI %q, not the device ID", u.String())
		}
	}
	if len(csr.EmailAddresses) > 0 || len(csr.IPAddresses) > 0 {
		return badRequest("CSR names e-mail addresses or IP addresses; a device identity carries only its device ID")
	}
	return nil
}

func checkPublicKey(csr *x509.CertificateRequest) error {
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return badRequest("ECDSA key on curve %s; use P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return badRequest("RSA key of %d bits; use %d to %d bits", bits, minRSABits, maxRSABits)
		}
	default:
		return badRequest("unsupported public key type %T; use ECDSA P-256/P-384, Ed25519 or RSA >= %d", csr.PublicKey, minRSABits)
	}
	switch csr.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.MD5WithRSA, x509.UnknownSignatureAlgorithm:
		return badRequest("CSR signature algorithm %s is not accepted", csr.SignatureAlgorithm)
	}
	return nil
}

// Renew issues a new certificate with the same subject, key and lifetime as cert, starting now.
// cert must be a current, unrevoked device identity (client auth) from this CA; the server calls Renew with the
// certificate the client presented over mTLS, which proves possession of the key.
func (a *Authority) Renew(ctx context.Context, cert *x509.Certificate) ([]*x509.Certificate, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrNotTrusted)
	}
	if err := a.verifyLeaf(cert, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	// The smallstep renewal keeps the old duration and starts it at the real current time; a leaf
	// that would then outlive the intermediate is refused rather than issued broken.
	if time.Now().Add(cert.NotAfter.Sub(cert.NotBefore)).After(a.inter.NotAfter) {
		return nil, fmt.Errorf("certs: renewal would outlive the intermediate CA (expires %s); enroll again after the CA is rotated",
			a.inter.NotAfter.Format(time.RFC3339))
	}
	chain, err := a.auth.RenewContext(ctx, cert, nil)
	if err != nil {
		return nil, fmt.Errorf("certs: renew certificate %s: %w", cert.SerialNumber, err)
	}
	a.logger.Info("renewed certificate", "subject", chain[0].Subject.CommonName,
		"old_serial", cert.SerialNumber.String(), "serial", chain[0].SerialNumber.String(), "not_after", chain[0].NotAfter)
	return chain, nil
}
