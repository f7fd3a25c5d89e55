package applesim

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// MaxProfileSize bounds the configuration profiles the device accepts.
const MaxProfileSize = 4 << 20

// Error domains and codes the simulated device reports in ErrorChain.
// The domains are Apple's, and so are 1000, 1002 and 1003, the codes
// Apple's profile parser uses for malformed profiles, missing fields
// and invalid fields. Apple publishes no current catalogue of the other
// codes, so those are the simulator's own choice. Servers should key on
// Status and ErrorDomain, never on exact codes.
const (
	// ProfileErrorDomain is the domain of profile parsing errors.
	ProfileErrorDomain = "MCProfileErrorDomain"
	// MDMErrorDomain is the domain of MDM command errors.
	MDMErrorDomain = "MCMDMErrorDomain"

	// CodeMalformedProfile: the profile is not a valid (signed) plist.
	CodeMalformedProfile = 1000
	// CodeRequiredFieldMiss: a required profile or payload key is missing.
	CodeRequiredFieldMiss = 1002
	// CodeInvalidField: a profile or payload key has a wrong type or value.
	CodeInvalidField = 1003
	// CodeProfileNotFound: RemoveProfile named a profile not installed.
	CodeProfileNotFound = 1004

	// CodeMalformedCommand accompanies CommandFormatError.
	CodeMalformedCommand = 12008
	// CodeInvalidUnlockToken: ClearPasscode carried a wrong token.
	CodeInvalidUnlockToken = 12018
	// CodeUnknownCommand: the RequestType is not supported.
	CodeUnknownCommand = 12021
	// CodeRequiresSupervised: the command needs a supervised device.
	CodeRequiresSupervised = 12070
	// CodeUnsupported: the command does not exist on this platform.
	CodeUnsupported = 12082
)

// ProfileError says why a configuration profile was refused.
type ProfileError struct {
	Code  int    // one of the profile error codes above
	Field string // the offending key, if any
	Msg   string
}

// Error implements error.
func (e *ProfileError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("profile: %s: %s", e.Field, e.Msg)
	}
	return "profile: " + e.Msg
}

// ParseProfile reads a configuration profile (.mobileconfig) the way a
// device does: it unwraps and verifies a CMS signature if there is one
// (the signer need not be trusted, as on a device), parses the property
// list and checks the keys Apple requires of the profile and of each
// payload. Encrypted profiles (EncryptedPayloadContent) are refused as
// unsupported by the simulator.
func ParseProfile(data []byte) (*Profile, error) {
	if len(data) > MaxProfileSize {
		return nil, &ProfileError{Code: CodeMalformedProfile, Msg: fmt.Sprintf("profile is %d bytes, more than %d", len(data), MaxProfileSize)}
	}
	p := new(Profile)
	if isCMS(data) {
		content, signers, err := unwrapSigned(data)
		if err != nil {
			return nil, &ProfileError{Code: CodeMalformedProfile, Msg: "bad CMS signature: " + err.Error()}
		}
		p.Signed, p.SignerCertificates, data = true, signers, content
	}
	top, err := decodeDict(data, MaxProfileSize)
	if err != nil {
		return nil, &ProfileError{Code: CodeMalformedProfile, Msg: err.Error()}
	}
	if present(top, "EncryptedPayloadContent") {
		return nil, &ProfileError{Code: CodeMalformedProfile, Field: "EncryptedPayloadContent", Msg: "encrypted profiles are not supported by the simulator"}
	}
	h, err := payloadHeader(top)
	if err != nil {
		return nil, err
	}
	if h.Type != "Configuration" {
		return nil, &ProfileError{Code: CodeInvalidField, Field: "PayloadType", Msg: fmt.Sprintf("top-level PayloadType is %q, want Configuration", h.Type)}
	}
	p.Identifier, p.UUID, p.DisplayName, p.Version = h.Identifier, h.UUID, h.DisplayName, h.Version
	p.Description, _ = getString(top, "PayloadDescription")
	p.Organization, _ = getString(top, "PayloadOrganization")
	p.RemovalDisallowed, _ = getBool(top, "PayloadRemovalDisallowed")
	p.Raw = bytes.Clone(data)

	if present(top, "PayloadContent") {
		content, ok := getArray(top, "PayloadContent")
		if !ok {
			return nil, &ProfileError{Code: CodeInvalidField, Field: "PayloadContent", Msg: "not an array"}
		}
		for i, item := range content {
			dict, ok := item.(map[string]any)
			if !ok {
				return nil, &ProfileError{Code: CodeInvalidField, Field: fmt.Sprintf("PayloadContent[%d]", i), Msg: "not a dictionary"}
			}
			ph, err := payloadHeader(dict)
			if err != nil {
				var pe *ProfileError
				if errors.As(err, &pe) {
					pe.Field = fmt.Sprintf("PayloadContent[%d].%s", i, pe.Field)
				}
				return nil, err
			}
			ph.Content = dict
			p.Payloads = append(p.Payloads, ph)
		}
	}
	return p, nil
}

// payloadHeader checks and reads the keys every payload (and the
// profile itself) must carry.
func payloadHeader(d map[string]any) (Payload, error) {
	var h Payload
	for _, f := range []struct {
		key string
		dst *string
	}{{"PayloadType", &h.Type}, {"PayloadIdentifier", &h.Identifier}, {"PayloadUUID", &h.UUID}} {
		if !present(d, f.key) {
			return h, &ProfileError{Code: CodeRequiredFieldMiss, Field: f.key, Msg: "required field missing"}
		}
		s, ok := getString(d, f.key)
		if !ok || s == "" {
			return h, &ProfileError{Code: CodeInvalidField, Field: f.key, Msg: "not a non-empty string"}
		}
		*f.dst = s
	}
	if !present(d, "PayloadVersion") {
		return h, &ProfileError{Code: CodeRequiredFieldMiss, Field: "PayloadVersion", Msg: "required field missing"}
	}
	v, ok := getInt(d, "PayloadVersion")
	if !ok || v != 1 {
		return h, &ProfileError{Code: CodeInvalidField, Field: "PayloadVersion", Msg: "must be the integer 1"}
	}
	h.Version = int(v)
	h.DisplayName, _ = getString(d, "PayloadDisplayName")
	return h, nil
}

// isCMS reports whether data looks like DER (a SEQUENCE) rather than a
// property list, which starts with "<?xml", "<plist" or "bplist".
func isCMS(data []byte) bool {
	return len(data) > 0 && data[0] == 0x30
}

// unwrapSigned verifies a CMS SignedData and returns its content and
// the DER certificates it carries, signer first.
func unwrapSigned(data []byte) (content []byte, signers [][]byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			content, signers, err = nil, nil, fmt.Errorf("malformed CMS: %v", r)
		}
	}()
	p7, err := pkcs7.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	if len(p7.Content) == 0 {
		return nil, nil, errors.New("CMS carries no content")
	}
	if err := p7.Verify(); err != nil {
		return nil, nil, err
	}
	if signer := p7.GetOnlySigner(); signer != nil {
		signers = append(signers, bytes.Clone(signer.Raw))
	}
	for _, c := range p7.Certificates {
		if len(signers) > 0 && bytes.Equal(c.Raw, signers[0]) {
			continue
		}
		signers = append(signers, bytes.Clone(c.Raw))
	}
	return p7.Content, signers, nil
}
