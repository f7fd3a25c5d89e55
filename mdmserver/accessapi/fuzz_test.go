package accessapi

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/posture"
)

// FuzzCheckRequest feeds arbitrary bodies through the check request's decoding and subject
// parsing: the pieces of POST /access/v1/check that read untrusted bytes. They must never
// panic, and a decoded subject's fingerprint and certificate are either accepted in canonical
// form or refused.
func FuzzCheckRequest(f *testing.F) {
	f.Add([]byte(`{"device_id":"d_00000000000000ff"}`))
	f.Add([]byte(`{"devices":[{"certificate_sha256":"AB:CD"},{"token":"a.b.c"}]}`))
	f.Add([]byte(`{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/access/v1/check", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		var req posture.CheckRequest
		if !problem.DecodeJSON(w, r, maxCheckBody, &req) {
			if w.Code < 400 || w.Code >= 500 {
				t.Fatalf("refused body answered %d", w.Code)
			}
			return
		}
		for _, s := range append(req.Devices, req.Subject) {
			if fp, ok := normalizeFingerprint(s.CertificateSHA256); ok && len(fp) != 64 {
				t.Fatalf("fingerprint %q normalised to %q", s.CertificateSHA256, fp)
			}
			if c, err := parseSubjectCert(s.Certificate); err == nil && c == nil {
				t.Fatal("no certificate and no error")
			}
		}
		if _, err := json.Marshal(req); err != nil {
			t.Fatal(err)
		}
	})
}
