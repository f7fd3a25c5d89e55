package enroll

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/text"
)

// Body size limits. An enrollment request is a handful of short strings; an agent enrollment
// carries one CSR (a 4096-bit RSA CSR is under 2 KiB of PEM).
const (
	MaxRequestBody     = 4 << 10
	MaxAgentEnrollBody = 64 << 10
)

// ErrTooLarge is returned when a body exceeds its limit; the HTTP layer answers 413.
var ErrTooLarge = errors.New("enroll: request body too large")

// DecodeRequest reads and validates the JSON body of POST /api/v1/enrollments (api.EnrollmentRequest):
// {"owner", "group", "platform": "apple"|"agent", "ttl": "24h"}. ttl is a Go duration or a whole
// number of days ("7d"); absent means DefaultTTL. Unknown fields are rejected. The caller sets
// CreatedBy. Errors wrap ErrInvalid or ErrTooLarge.
func DecodeRequest(r io.Reader) (Request, error) {
	var body api.EnrollmentRequest
	if err := decodeJSON(r, MaxRequestBody, &body); err != nil {
		return Request{}, err
	}
	req := Request{Owner: body.Owner, Group: body.Group, Platform: Platform(body.Platform), BYOD: body.BYOD, ManagedAppleID: body.ManagedAppleID,
		Reusable: body.Reusable, OS: body.OS, MaxDevices: body.MaxDevices}
	if body.TTL != "" {
		d, err := parseTTL(body.TTL)
		if err != nil {
			return Request{}, err
		}
		req.TTL = d
	}
	return req.normalize()
}

// parseTTL accepts a Go duration ("90m", "24h") or whole days ("7d").
func parseTTL(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > int(MaxReusableTTL/(24*time.Hour)) {
			return 0, fmt.Errorf("%w: ttl %q is not a number of days between 1 and %d", ErrInvalid, s, int(MaxReusableTTL/(24*time.Hour)))
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: ttl %q is not a duration such as \"24h\" or \"7d\"", ErrInvalid, s)
	}
	return d, nil
}

// Facts are what an agent says about its host at enrollment (api.AgentFacts). They are
// self-reported: useful for inventory, never for trust decisions.
type Facts = api.AgentFacts

// agentOSes are the operating systems the agent runs on.
var agentOSes = []string{"windows", "linux", "macos"}

// AgentEnrollRequest is a decoded, validated POST /agent/v1/enroll body.
type AgentEnrollRequest struct {
	Token string
	// CSR is parsed and its self-signature checked; key and name policy is the CA's job.
	CSR   *x509.CertificateRequest
	Facts Facts
}

// DecodeAgentEnroll reads and validates the JSON body of POST /agent/v1/enroll:
// {"token", "csr": PEM, "facts": {hostname, os, os_version, serial, platform}}. The CSR must be
// exactly one PEM CERTIFICATE REQUEST block with a valid self-signature. Errors wrap ErrInvalid
// or ErrTooLarge.
func DecodeAgentEnroll(r io.Reader) (AgentEnrollRequest, error) {
	var body api.AgentEnrollRequest
	if err := decodeJSON(r, MaxAgentEnrollBody, &body); err != nil {
		return AgentEnrollRequest{}, err
	}
	if body.Token == "" || len(body.Token) > maxText || !text.Printable(body.Token) {
		return AgentEnrollRequest{}, fmt.Errorf("%w: token is missing or malformed", ErrInvalid)
	}
	if err := validateFacts(&body.Facts); err != nil {
		return AgentEnrollRequest{}, err
	}
	csr, err := ParseCSR(body.CSR)
	if err != nil {
		return AgentEnrollRequest{}, err
	}
	return AgentEnrollRequest{Token: body.Token, CSR: csr, Facts: body.Facts}, nil
}

// validateFacts checks that f's fields are bounded printable text and its OS one the agent runs
// on.
func validateFacts(f *Facts) error {
	for _, c := range []struct {
		field    string
		v        string
		required bool
	}{
		{"facts.hostname", f.Hostname, true},
		{"facts.os", f.OS, true},
		{"facts.os_version", f.OSVersion, false},
		{"facts.serial", f.Serial, false},
		{"facts.platform", f.Platform, false},
		{"facts.agent_version", f.AgentVersion, false},
	} {
		if err := checkText(c.field, c.v, c.required); err != nil {
			return err
		}
	}
	for _, os := range agentOSes {
		if f.OS == os {
			return nil
		}
	}
	return fmt.Errorf("%w: facts.os %q is not one of %v", ErrInvalid, f.OS, agentOSes)
}

// ParseCSR decodes one PEM CERTIFICATE REQUEST block and checks its self-signature. Errors wrap
// ErrInvalid.
func ParseCSR(s string) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, fmt.Errorf("%w: csr must be a PEM CERTIFICATE REQUEST block", ErrInvalid)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: csr has data after the PEM block", ErrInvalid)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: csr does not parse: %v", ErrInvalid, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: csr signature is invalid: %v", ErrInvalid, err)
	}
	return csr, nil
}

// decodeJSON decodes exactly one JSON object of at most limit bytes into v, rejecting unknown
// fields and trailing data.
func decodeJSON(r io.Reader, limit int64, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("%w: read body: %v", ErrInvalid, err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, limit)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body is not the expected JSON object: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: body has data after the JSON object", ErrInvalid)
	}
	return nil
}
