package agent

import (
	"strings"
	"testing"
)

// FuzzParseEnrollFile: an enrollment file is read by a root service from disk; whatever it
// holds, parsing never panics, and what it accepts has all three fields valid.
func FuzzParseEnrollFile(f *testing.F) {
	fp := strings.Repeat("ab", 32)
	for _, s := range []string{
		`{"server_url":"https://mdm.example.org:8443","token":"hale_enr_x","ca_fingerprint":"` + fp + `"}`,
		`{"server_url":"https://mdm.example.org","token":"t","ca_fingerprint":"abc"}`,
		`{"server_url":"ftp://x","token":"t","ca_fingerprint":"` + fp + `"}`,
		`{"server_url":"https://x","token":"t","ca_fingerprint":"` + fp + `","extra":1}`,
		`{"server_url":"https://x","token":"t","ca_fingerprint":"` + fp + `"} {}`,
		`{}`, `null`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := ParseEnrollFile(data)
		if err != nil {
			return
		}
		if ef.ServerURL == "" || ef.Token == "" || len(ef.CAFingerprint) < 64 {
			t.Fatalf("accepted %+v", ef)
		}
	})
}

func TestParseEnrollFile(t *testing.T) {
	fp := strings.Repeat("AB:", 31) + "AB"
	ef, err := ParseEnrollFile([]byte(`{"server_url":"https://mdm.example.org:8443","token":"hale_enr_x","ca_fingerprint":"` + fp + `"}`))
	if err != nil || ef.Token != "hale_enr_x" {
		t.Fatalf("%+v, %v", ef, err)
	}
	for _, bad := range []string{
		`{"server_url":"https://x","token":"","ca_fingerprint":"` + fp + `"}`,
		`{"server_url":"https://x","token":"t","ca_fingerprint":"ab"}`,
		`{"server_url":"https://x","token":"t","ca_fingerprint":"` + fp + `","x":1}`,
		strings.Repeat(" ", MaxEnrollFile+1),
	} {
		if _, err := ParseEnrollFile([]byte(bad)); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}
