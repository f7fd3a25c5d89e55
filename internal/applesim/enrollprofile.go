package applesim

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Payload types of an MDM enrollment profile.
const (
	MDMPayloadType  = "com.apple.mdm"
	SCEPPayloadType = "com.apple.security.scep"
	RootPayloadType = "com.apple.security.root"
)

// EnrollmentProfile is what a device reads from an MDM enrollment
// profile (the .mobileconfig a user installs, such as Hale's
// GET /enroll/apple/{token}).
type EnrollmentProfile struct {
	// Profile is the whole parsed profile.
	Profile *Profile
	// From the com.apple.mdm payload.
	ServerURL               string
	CheckInURL              string
	Topic                   string
	SignMessage             bool
	AccessRights            int
	IdentityCertificateUUID string
	// SCEP is the SCEP payload the identity comes from, if the
	// identity is a SCEP payload.
	SCEP *SCEPPayload
	// RootCertificates are the profile's com.apple.security.root
	// certificates, which the device trusts (for the server's TLS).
	RootCertificates []*x509.Certificate
	// EnrollmentMode is "BYOD" for a user enrollment (account-driven
	// User Enrollment of a personal device), with the Managed Apple
	// Account it enrolls as.
	EnrollmentMode         string
	AssignedManagedAppleID string
}

// SCEPPayload is the content of a com.apple.security.scep payload.
type SCEPPayload struct {
	UUID      string
	URL       string
	Name      string
	Challenge string
	KeySize   int
	KeyType   string
	KeyUsage  int
	// Subject is the X.500 name as (attribute, value) pairs, in order,
	// e.g. {"CN", "device"}.
	Subject [][2]string
}

// ParseEnrollmentProfile parses an enrollment profile like a device
// installing it: the profile must parse ([ParseProfile]), hold exactly
// one com.apple.mdm payload with an https ServerURL (and CheckInURL if
// any), a com.apple.mgmt. Topic, non-zero AccessRights and an
// IdentityCertificateUUID naming another payload of the profile. Root
// certificate payloads must hold DER certificates.
func ParseEnrollmentProfile(data []byte) (*EnrollmentProfile, error) {
	p, err := ParseProfile(data)
	if err != nil {
		return nil, err
	}
	ep := &EnrollmentProfile{Profile: p}
	uuids := map[string]Payload{}
	var mdmPayloads []Payload
	for _, pl := range p.Payloads {
		uuids[pl.UUID] = pl
		switch pl.Type {
		case MDMPayloadType:
			mdmPayloads = append(mdmPayloads, pl)
		case RootPayloadType:
			der, ok := getData(pl.Content, "PayloadContent")
			if !ok {
				return nil, fmt.Errorf("enrollment profile: root payload %s: PayloadContent is not certificate data", pl.Identifier)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("enrollment profile: root payload %s: %w", pl.Identifier, err)
			}
			ep.RootCertificates = append(ep.RootCertificates, cert)
		}
	}
	if len(mdmPayloads) != 1 {
		return nil, fmt.Errorf("enrollment profile: %d %s payloads, want exactly 1", len(mdmPayloads), MDMPayloadType)
	}
	m := mdmPayloads[0].Content
	var ok bool
	if ep.ServerURL, ok = getString(m, "ServerURL"); !ok || !isHTTPS(ep.ServerURL) {
		return nil, fmt.Errorf("enrollment profile: ServerURL %q is not an https URL", ep.ServerURL)
	}
	if present(m, "CheckInURL") {
		if ep.CheckInURL, ok = getString(m, "CheckInURL"); !ok || !isHTTPS(ep.CheckInURL) {
			return nil, fmt.Errorf("enrollment profile: CheckInURL %q is not an https URL", ep.CheckInURL)
		}
	}
	if ep.Topic, ok = getString(m, "Topic"); !ok || !strings.HasPrefix(ep.Topic, "com.apple.mgmt.") {
		return nil, fmt.Errorf("enrollment profile: Topic %q lacks the com.apple.mgmt. prefix", ep.Topic)
	}
	ep.SignMessage, _ = getBool(m, "SignMessage")
	ep.EnrollmentMode, _ = getString(m, "EnrollmentMode")
	ep.AssignedManagedAppleID, _ = getString(m, "AssignedManagedAppleID")
	if ep.EnrollmentMode != "" && (ep.EnrollmentMode != "BYOD" || !strings.Contains(ep.AssignedManagedAppleID, "@")) {
		return nil, fmt.Errorf("enrollment profile: EnrollmentMode %q needs BYOD and an AssignedManagedAppleID", ep.EnrollmentMode)
	}
	rights, ok := getInt(m, "AccessRights")
	if !ok || rights <= 0 || rights > 1<<20 {
		return nil, fmt.Errorf("enrollment profile: AccessRights missing or invalid")
	}
	ep.AccessRights = int(rights)
	if ep.IdentityCertificateUUID, ok = getString(m, "IdentityCertificateUUID"); !ok {
		return nil, fmt.Errorf("enrollment profile: IdentityCertificateUUID missing")
	}
	identity, ok := uuids[ep.IdentityCertificateUUID]
	if !ok {
		return nil, fmt.Errorf("enrollment profile: IdentityCertificateUUID %s names no payload of the profile", ep.IdentityCertificateUUID)
	}
	if identity.Type == SCEPPayloadType {
		if ep.SCEP, err = parseSCEPPayload(identity); err != nil {
			return nil, err
		}
	}
	return ep, nil
}

func parseSCEPPayload(pl Payload) (*SCEPPayload, error) {
	c, ok := getDict(pl.Content, "PayloadContent")
	if !ok {
		return nil, fmt.Errorf("enrollment profile: SCEP payload %s has no PayloadContent dictionary", pl.Identifier)
	}
	s := &SCEPPayload{UUID: pl.UUID}
	if s.URL, ok = getString(c, "URL"); !ok || s.URL == "" {
		return nil, fmt.Errorf("enrollment profile: SCEP payload %s has no URL", pl.Identifier)
	}
	s.Name, _ = getString(c, "Name")
	s.Challenge, _ = getString(c, "Challenge")
	s.KeyType, _ = getString(c, "Key Type")
	if n, ok := getInt(c, "Keysize"); ok {
		s.KeySize = int(n)
	}
	if n, ok := getInt(c, "Key Usage"); ok {
		s.KeyUsage = int(n)
	}
	if subj, ok := getArray(c, "Subject"); ok {
		for _, rdn := range subj {
			attrs, ok := rdn.([]any)
			if !ok {
				return nil, fmt.Errorf("enrollment profile: SCEP Subject entries must be arrays")
			}
			for _, a := range attrs {
				pair, ok := a.([]any)
				if !ok || len(pair) != 2 {
					return nil, fmt.Errorf("enrollment profile: SCEP Subject attributes must be [type, value] pairs")
				}
				k, ok1 := pair[0].(string)
				v, ok2 := pair[1].(string)
				if !ok1 || !ok2 {
					return nil, fmt.Errorf("enrollment profile: SCEP Subject attributes must be strings")
				}
				s.Subject = append(s.Subject, [2]string{k, v})
			}
		}
	}
	return s, nil
}

// CertPool returns a pool of the profile's root certificates.
func (ep *EnrollmentProfile) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range ep.RootCertificates {
		pool.AddCert(c)
	}
	return pool
}

// Options returns the device options the profile sets: topic,
// CheckInURL, Mdm-Signature or TLS identity and, if the profile carries
// root certificates, an HTTP client that trusts them. Pass them to
// [New] with ep.ServerURL, followed by [WithIdentity] and any override.
func (ep *EnrollmentProfile) Options() []Option {
	opts := []Option{WithTopic(ep.Topic), WithSignMessage(ep.SignMessage)}
	if ep.CheckInURL != "" {
		opts = append(opts, WithCheckInURL(ep.CheckInURL))
	}
	if ep.EnrollmentMode == "BYOD" {
		opts = append(opts, withUserEnrollment(ep.Profile.Identifier, ep.AssignedManagedAppleID))
	}
	if len(ep.RootCertificates) > 0 {
		opts = append(opts, WithHTTPClient(&http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: ep.CertPool(), MinVersion: tls.VersionTLS12},
				ForceAttemptHTTP2: true,
			},
		}))
	}
	return opts
}

func isHTTPS(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != ""
}
