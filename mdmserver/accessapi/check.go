package accessapi

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/halemdm/hale/certs"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/posture"
)

// Bounds of POST /access/v1/check: a batch of MaxCheckBatch subjects that each carry a PEM
// certificate fits, anything much larger is refused before it is read.
const (
	maxCheckBody      = 4 << 20
	maxSubjectCertPEM = 16 << 10
)

// Check answers POST /access/v1/check: posture.CheckRequest, one subject (device ID,
// certificate, fingerprint or posture token) or a batch of up to posture.MaxCheckBatch, and a
// posture.Decision or a posture.CheckResponse. A subject the server cannot vouch for is a deny
// with a reason, never an error: the backend always gets a decision.
func (h *Handler) Check(w http.ResponseWriter, r *http.Request) {
	var req posture.CheckRequest
	if !problem.DecodeJSON(w, r, maxCheckBody, &req) {
		return
	}
	single := req.Subject != (posture.Subject{})
	switch {
	case single && len(req.Devices) > 0:
		problem.BadRequest(w, r, "give one subject or a devices batch, not both")
		return
	case !single && len(req.Devices) == 0:
		problem.BadRequest(w, r, "give a subject (device_id, certificate, certificate_sha256 or token) or a devices batch")
		return
	case len(req.Devices) > posture.MaxCheckBatch:
		problem.Error(w, r, http.StatusRequestEntityTooLarge, "batch-too-large",
			"a check carries at most 1000 subjects; split the batch")
		return
	}
	now := h.Now()
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	decide := h.decideJSON
	if access.WantsRemediation(r) {
		// The caller passes on its user's language: each decision carries what to fix.
		hd.Set("Vary", "Accept-Language")
		decide = func(r *http.Request, subj posture.Subject, now time.Time) []byte {
			return access.AddRemediation(h.decideJSON(r, subj, now), r.Header.Get("Accept-Language"), h.HelpDesk)
		}
	}
	if single {
		hd.Set("Content-Type", "application/json")
		w.Write(decide(r, req.Subject, now))
		return
	}
	// posture.CheckResponse, with each decision as the index encoded it.
	out := struct {
		Decisions []json.RawMessage `json:"decisions"`
	}{make([]json.RawMessage, len(req.Devices))}
	for i, subj := range req.Devices {
		out.Decisions[i] = decide(r, subj, now)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// decideJSON is the encoded decision (posture.Decision) for one subject.
func (h *Handler) decideJSON(r *http.Request, subj posture.Subject, now time.Time) []byte {
	deny := func(id, code, detail string) []byte {
		b, _ := json.Marshal(access.DenyAnswer(id, code, detail))
		return b
	}
	given := 0
	for _, f := range []string{subj.DeviceID, subj.Certificate, subj.CertificateSHA256, subj.Token} {
		if f != "" {
			given++
		}
	}
	if given != 1 {
		return deny(subj.DeviceID, access.ReasonInvalidSubject,
			"name the device one way: device_id, certificate, certificate_sha256 or token")
	}
	var id string
	switch {
	case subj.DeviceID != "":
		if len(subj.DeviceID) > access.MaxDeviceIDLen {
			return deny("", access.ReasonInvalidDeviceID, "the device id is malformed")
		}
		id = subj.DeviceID
	case subj.Certificate != "":
		cert, err := parseSubjectCert(subj.Certificate)
		if err != nil {
			return deny("", access.ReasonUnknownCert, err.Error())
		}
		if err := h.CA.VerifyClientCert([]*x509.Certificate{cert}); errors.Is(err, certs.ErrRevoked) {
			return deny(cert.Subject.CommonName, access.ReasonCertRevoked, "the certificate was revoked")
		} else if err != nil && h.VerifyExtraCA([]*x509.Certificate{cert}) != nil {
			return deny("", access.ReasonUnknownCert, "the certificate was not issued to a device by this server or is expired")
		}
		if id = h.Index.DeviceForSHA256(inventory.CertFingerprint(cert)); id == "" {
			return deny("", access.ReasonUnknownCert, "no enrolled device holds this certificate")
		}
	case subj.CertificateSHA256 != "":
		fp, ok := normalizeFingerprint(subj.CertificateSHA256)
		if !ok {
			return deny("", access.ReasonUnknownCert, "certificate_sha256 must be 64 hex digits, colons allowed")
		}
		if id = h.Index.DeviceForSHA256(fp); id == "" {
			return deny("", access.ReasonUnknownCert, "no enrolled device holds a certificate with this fingerprint")
		}
	case subj.Token != "":
		claims, err := h.Tokens.VerifyUnbound(r.Context(), subj.Token)
		if err != nil {
			return deny("", posture.ReasonCode(err), err.Error())
		}
		id = claims.Subject
	}
	body, _ := h.Index.LookupJSON(id, now)
	return body
}

// parseSubjectCert decodes one PEM certificate, bounded.
func parseSubjectCert(p string) (*x509.Certificate, error) {
	if len(p) > maxSubjectCertPEM {
		return nil, errors.New("the certificate is too large")
	}
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("certificate must be one PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, errors.New("the certificate does not parse: " + err.Error())
	}
	return cert, nil
}

// normalizeFingerprint accepts a SHA-256 in hex, upper or lower case, with or without colons.
func normalizeFingerprint(s string) (string, bool) {
	if len(s) > 3*32 {
		return "", false
	}
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", false
	}
	return s, true
}
