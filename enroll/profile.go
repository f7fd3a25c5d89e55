package enroll

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/text"
)

// AccessRights bits of the com.apple.mdm payload, as documented by Apple
// (apple/device-management, mdm/profiles/com.apple.mdm.yaml, key AccessRights).
const (
	RightInspectProfiles     = 1    // inspect installed configuration profiles
	RightInstallProfiles     = 2    // install and remove configuration profiles (requires 1)
	RightLockAndPasscode     = 4    // device lock and passcode removal
	RightErase               = 8    // device erase
	RightQueryDeviceInfo     = 16   // device information (capacity, serial number)
	RightQueryNetworkInfo    = 32   // network information (phone/SIM numbers, MAC addresses)
	RightInspectProvisioning = 64   // inspect installed provisioning profiles
	RightInstallProvisioning = 128  // install and remove provisioning profiles (requires 64)
	RightInspectApps         = 256  // inspect installed applications
	RightRestrictionQueries  = 512  // restriction-related queries
	RightSecurityQueries     = 1024 // security-related queries (SecurityInfo)
	RightSettings            = 2048 // manipulation of settings
	RightAppManagement       = 4096 // app management

	rightsAll = 8191
)

// DefaultAccessRights is what Hale needs and no more: configuration profiles (inspect 1 + install
// 2, to push policies and read ProfileList), lock and passcode removal (4), erase (8), device (16)
// and network (32) information, and security queries (1024, SecurityInfo for posture):
// 1+2+4+8+16+32+1024 = 1087. Provisioning profiles and apps are not managed, so those rights are
// not asked for; a device shows the user what the server may do.
const DefaultAccessRights = RightInspectProfiles | RightInstallProfiles | RightLockAndPasscode |
	RightErase | RightQueryDeviceInfo | RightQueryNetworkInfo | RightSecurityQueries

// ProfileParams are the inputs of an Apple enrollment profile.
type ProfileParams struct {
	// Identifier is the reverse-DNS profile identifier; payload identifiers derive from it.
	// Default "io.hale.enroll".
	Identifier   string
	DisplayName  string // default "Hale device management"
	Description  string
	Organization string

	// RootCA is the root the device must trust for the server and its own identity.
	RootCA *x509.Certificate

	SCEPURL string
	// SCEPName is the optional CA instance name the SCEP server understands.
	SCEPName string
	// Challenge is the one-time SCEP challenge from IssueChallenge.
	Challenge string
	// SubjectCN is the device-identifying common name of the requested certificate.
	SubjectCN string
	// SubjectO is an optional organization in the requested subject.
	SubjectO string

	ServerURL  string
	CheckInURL string // default ServerURL
	Topic      string // the APNs push topic, com.apple.mgmt.…
	// AccessRights defaults to DefaultAccessRights (less erase for a user enrollment).
	AccessRights int

	// ManagedAppleID makes the profile a user enrollment of a personal device (account-driven
	// User Enrollment, EnrollmentMode BYOD) as that Managed Apple Account: the device keeps
	// managed data on its own volume, and the server can neither erase it nor see personal data.
	ManagedAppleID string
}

// payloadCommon holds the keys every payload carries.
type payloadCommon struct {
	PayloadType         string
	PayloadVersion      int
	PayloadIdentifier   string
	PayloadUUID         string
	PayloadDisplayName  string `plist:",omitempty"`
	PayloadDescription  string `plist:",omitempty"`
	PayloadOrganization string `plist:",omitempty"`
}

type rootPayload struct {
	payloadCommon
	PayloadCertificateFileName string
	PayloadContent             []byte
}

type scepContent struct {
	URL        string
	Name       string `plist:",omitempty"`
	Subject    [][][]string
	Challenge  string
	Keysize    int
	KeyType    string `plist:"Key Type"`
	KeyUsage   int    `plist:"Key Usage"`
	Retries    int
	RetryDelay int
}

type scepPayload struct {
	payloadCommon
	PayloadContent scepContent
}

type mdmPayload struct {
	payloadCommon
	ServerURL               string
	CheckInURL              string
	Topic                   string
	IdentityCertificateUUID string
	SignMessage             bool
	AccessRights            int
	CheckOutWhenRemoved     bool
	ServerCapabilities      []string
	EnrollmentMode          string `plist:",omitempty"`
	AssignedManagedAppleID  string `plist:",omitempty"`
}

type profile struct {
	payloadCommon
	PayloadContent []any
}

// AppleProfile renders the unsigned .mobileconfig that enrolls an Apple device: the root CA, a
// SCEP payload that obtains the device identity with the one-time challenge, and the MDM payload
// that uses that identity. Keys are written in sorted order, so equal inputs give equal bytes
// apart from the fresh payload UUIDs.
func AppleProfile(p ProfileParams) ([]byte, error) {
	if err := p.normalize(); err != nil {
		return nil, err
	}
	common := func(typ, suffix, name string) payloadCommon {
		return payloadCommon{
			PayloadType:         typ,
			PayloadVersion:      1,
			PayloadIdentifier:   p.Identifier + "." + suffix,
			PayloadUUID:         randid.UUID(),
			PayloadDisplayName:  name,
			PayloadOrganization: p.Organization,
		}
	}
	root := rootPayload{
		payloadCommon:              common("com.apple.security.root", "root", "Root certificate"),
		PayloadCertificateFileName: "root.cer",
		PayloadContent:             p.RootCA.Raw,
	}
	subject := [][][]string{}
	if p.SubjectO != "" {
		subject = append(subject, [][]string{{"O", p.SubjectO}})
	}
	subject = append(subject, [][]string{{"CN", p.SubjectCN}})
	scep := scepPayload{
		payloadCommon: common("com.apple.security.scep", "scep", "Device identity"),
		PayloadContent: scepContent{
			URL:        p.SCEPURL,
			Name:       p.SCEPName,
			Subject:    subject,
			Challenge:  p.Challenge,
			Keysize:    2048,
			KeyType:    "RSA",
			KeyUsage:   5, // 1 signing + 4 encryption: TLS client auth and SCEP both need them
			Retries:    3,
			RetryDelay: 10,
		},
	}
	mdm := mdmPayload{
		payloadCommon:           common("com.apple.mdm", "mdm", "Device management"),
		ServerURL:               p.ServerURL,
		CheckInURL:              p.CheckInURL,
		Topic:                   p.Topic,
		IdentityCertificateUUID: scep.PayloadUUID,
		SignMessage:             true,
		AccessRights:            p.AccessRights,
		CheckOutWhenRemoved:     true,
		ServerCapabilities:      []string{"com.apple.mdm.per-user-connections"},
	}
	if p.ManagedAppleID != "" {
		mdm.EnrollmentMode, mdm.AssignedManagedAppleID = "BYOD", p.ManagedAppleID
	}
	top := profile{
		payloadCommon: payloadCommon{
			PayloadType:         "Configuration",
			PayloadVersion:      1,
			PayloadIdentifier:   p.Identifier,
			PayloadUUID:         randid.UUID(),
			PayloadDisplayName:  p.DisplayName,
			PayloadDescription:  p.Description,
			PayloadOrganization: p.Organization,
		},
		PayloadContent: []any{root, scep, mdm},
	}
	out, err := plist.MarshalIndent(top, "\t")
	if err != nil {
		return nil, fmt.Errorf("enroll: render profile: %w", err)
	}
	return out, nil
}

// ProfileIdentifier is the PayloadIdentifier of Hale's enrollment profiles: removing the profile
// of that identifier (RemoveProfile) ends a user enrollment.
const ProfileIdentifier = "io.hale.enroll"

func (p *ProfileParams) normalize() error {
	if p.Identifier == "" {
		p.Identifier = ProfileIdentifier
	}
	if p.DisplayName == "" {
		p.DisplayName = "Hale device management"
	}
	if p.CheckInURL == "" {
		p.CheckInURL = p.ServerURL
	}
	if p.AccessRights == 0 {
		p.AccessRights = DefaultAccessRights
		if p.ManagedAppleID != "" {
			p.AccessRights &^= RightErase // a personal device is never erased
		}
	}
	if p.ManagedAppleID != "" && (!validAccount(p.ManagedAppleID) || p.AccessRights&RightErase != 0) {
		return errors.New("enroll: profile parameters: a user enrollment needs a user@domain Managed Apple Account and no erase right")
	}
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"identifier", p.Identifier}, {"display name", p.DisplayName}, {"description", p.Description},
		{"organization", p.Organization}, {"SCEP name", p.SCEPName}, {"subject O", p.SubjectO},
	} {
		if !text.Printable(f.v) || len(f.v) > 1024 {
			errs = append(errs, fmt.Errorf("%s must be printable text up to 1024 bytes", f.name))
		}
	}
	if p.RootCA == nil || len(p.RootCA.Raw) == 0 {
		errs = append(errs, errors.New("root CA certificate is required"))
	}
	if p.Challenge == "" || !text.Printable(p.Challenge) {
		errs = append(errs, errors.New("SCEP challenge is required"))
	}
	if err := checkText("subject CN", p.SubjectCN, true); err != nil {
		errs = append(errs, err)
	}
	if !strings.HasPrefix(p.Topic, "com.apple.mgmt.") {
		errs = append(errs, fmt.Errorf("topic %q does not start with com.apple.mgmt. (upload a push certificate first)", p.Topic))
	}
	errs = append(errs, checkURL("server URL", p.ServerURL, "https"), checkURL("check-in URL", p.CheckInURL, "https"),
		checkURL("SCEP URL", p.SCEPURL, "https", "http"))
	if p.AccessRights&^rightsAll != 0 || p.AccessRights < 0 {
		errs = append(errs, fmt.Errorf("access rights %d has unknown bits", p.AccessRights))
	}
	// Apple: specify 1 if you specify 2, and 64 if you specify 128.
	if p.AccessRights&RightInstallProfiles != 0 && p.AccessRights&RightInspectProfiles == 0 ||
		p.AccessRights&RightInstallProvisioning != 0 && p.AccessRights&RightInspectProvisioning == 0 {
		errs = append(errs, fmt.Errorf("access rights %d: an install right needs its inspect right", p.AccessRights))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("enroll: profile parameters: %w", err)
	}
	return nil
}

func checkURL(name, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s %q is not an absolute URL", name, raw)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return nil
		}
	}
	return fmt.Errorf("%s %q must use %s", name, raw, strings.Join(schemes, " or "))
}

// newUUID returns a random UUID in the upper-case form Apple's tools write.

// SignProfile wraps profile in a CMS SignedData (content attached, SHA-256) signed by cert and key,
// including chain (issuer first) so the device can build a path to a root it trusts.
func SignProfile(profile []byte, cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	if cert == nil || key == nil {
		return nil, errors.New("enroll: sign profile: certificate and key are required")
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("enroll: sign profile: key does not match the signing certificate")
	}
	sd, err := pkcs7.NewSignedData(profile)
	if err != nil {
		return nil, fmt.Errorf("enroll: sign profile: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if len(chain) == 0 {
		err = sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{})
	} else {
		err = sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{})
	}
	if err != nil {
		return nil, fmt.Errorf("enroll: sign profile: %w", err)
	}
	out, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("enroll: sign profile: %w", err)
	}
	return out, nil
}
