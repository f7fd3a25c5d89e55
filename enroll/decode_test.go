package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRequest(t *testing.T) {
	req, err := DecodeRequest(strings.NewReader(`{"owner":" alice ","group":"icu","platform":"apple","ttl":"7d"}`))
	if err != nil {
		t.Fatal(err)
	}
	if req.Owner != "alice" || req.Group != "icu" || req.Platform != PlatformApple || req.TTL != 7*24*time.Hour {
		t.Errorf("req = %+v", req)
	}
	req, err = DecodeRequest(strings.NewReader(`{"owner":"a","group":"g","platform":"agent"}`))
	if err != nil || req.TTL != DefaultTTL {
		t.Errorf("default ttl: %+v, %v", req, err)
	}
	for _, bad := range []string{
		``, `null`, `[]`, `{"owner":"a","group":"g","platform":"agent","extra":1}`,
		`{"owner":"a","group":"g","platform":"agent"} {}`,
		`{"owner":"a","group":"g","platform":"windows"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":"31d"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":"0d"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":"10s"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":"forever"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":24}`,
		`{"owner":"a\u0000","group":"g","platform":"agent"}`,
	} {
		if _, err := DecodeRequest(strings.NewReader(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeRequest(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	huge := `{"owner":"` + strings.Repeat("a", MaxRequestBody) + `"}`
	if _, err := DecodeRequest(strings.NewReader(huge)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge body: %v", err)
	}
}

func testCSR(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "host1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func agentBody(t testing.TB, token, csr string, facts Facts) string {
	b, err := json.Marshal(map[string]any{"token": token, "csr": csr, "facts": facts})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeAgentEnroll(t *testing.T) {
	csr := testCSR(t)
	facts := Facts{Hostname: "ws-12", OS: "linux", OSVersion: "6.8.0", Serial: "PF3XYZ", Platform: "ubuntu"}
	got, err := DecodeAgentEnroll(strings.NewReader(agentBody(t, "hale_enr_abc", csr, facts)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Token != "hale_enr_abc" || got.Facts != facts || got.CSR.Subject.CommonName != "host1" {
		t.Errorf("got %+v", got)
	}

	// A CSR whose signature does not match its key.
	block, _ := pem.Decode([]byte(csr))
	block.Bytes[len(block.Bytes)-3] ^= 0xff
	badSig := string(pem.EncodeToMemory(block))

	for name, body := range map[string]string{
		"no token":     agentBody(t, "", csr, facts),
		"no hostname":  agentBody(t, "t", csr, Facts{OS: "linux"}),
		"unknown os":   agentBody(t, "t", csr, Facts{Hostname: "h", OS: "plan9"}),
		"long serial":  agentBody(t, "t", csr, Facts{Hostname: "h", OS: "linux", Serial: strings.Repeat("s", 200)}),
		"ctrl in host": agentBody(t, "t", csr, Facts{Hostname: "h\n", OS: "linux"}),
		"not pem":      agentBody(t, "t", "MIIB...", facts),
		"cert not csr": agentBody(t, "t", strings.Replace(csr, "CERTIFICATE REQUEST", "CERTIFICATE", 2), facts),
		"two blocks":   agentBody(t, "t", csr+csr, facts),
		"bad sig":      agentBody(t, "t", badSig, facts),
		"unknown key":  `{"token":"t","csr":"","facts":{},"admin":true}`,
		"unknown fact": `{"token":"t","csr":"","facts":{"hostname":"h","os":"linux","jailbroken":false}}`,
	} {
		if _, err := DecodeAgentEnroll(strings.NewReader(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	huge := agentBody(t, "t", csr+strings.Repeat(" ", MaxAgentEnrollBody), facts)
	if _, err := DecodeAgentEnroll(strings.NewReader(huge)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge body: %v", err)
	}
}

func FuzzDecodeEnrollmentRequest(f *testing.F) {
	for _, s := range []string{
		`{"owner":"alice","group":"icu","platform":"apple","ttl":"24h"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":"30d"}`,
		`{"owner":"a","group":"g","platform":"agent","ttl":"-1h"}`,
		`{"owner":"\u00e9","group":"g","platform":"apple"}`,
		`{"owner":1}`, `[]`, `{}`, ``, `{"ttl":"9999999999999999999d"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrTooLarge", err)
			}
			return
		}
		// Whatever decodes must be a request Create accepts unchanged.
		norm, err := req.normalize()
		if err != nil || norm != req {
			t.Fatalf("decoded request %+v does not validate: %v", req, err)
		}
		if req.TTL < MinTTL || req.TTL > MaxTTL || !req.Platform.Valid() || req.Owner == "" || req.Group == "" {
			t.Fatalf("invalid request passed: %+v", req)
		}
	})
}

func FuzzDecodeAgentEnroll(f *testing.F) {
	csr := testCSR(f)
	facts := Facts{Hostname: "h", OS: "windows", OSVersion: "10.0.22631"}
	f.Add([]byte(agentBody(f, "hale_enr_00", csr, facts)))
	f.Add([]byte(agentBody(f, "t", csr+"junk", facts)))
	f.Add([]byte(agentBody(f, "t", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", facts)))
	f.Add([]byte(`{"token":"t","csr":null,"facts":null}`))
	f.Add([]byte(`{"token":"t","facts":{"hostname":"h","os":"macos"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeAgentEnroll(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrTooLarge", err)
			}
			return
		}
		if req.CSR == nil || req.CSR.CheckSignature() != nil {
			t.Fatal("accepted a request without a valid CSR")
		}
		if req.Token == "" || validateFacts(&req.Facts) != nil {
			t.Fatalf("accepted invalid token or facts: %+v", req)
		}
	})
}
