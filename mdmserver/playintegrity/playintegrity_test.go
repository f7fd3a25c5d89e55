package playintegrity

import (
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/playsim"
)

const testPkg = "org.example.securetext"

var (
	testCert = playsim.CertificateDigest([]byte("signing certificate DER"))
	testNow  = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

func setup(t testing.TB) (*playsim.Service, *Verifier) {
	t.Helper()
	s, err := playsim.New()
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(testPkg, s.DecryptionKey, s.VerificationKey,
		WithCertificateDigests(testCert), WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func token(t testing.TB, s *playsim.Service, p playsim.Payload) string {
	t.Helper()
	tok, err := s.Token(p)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGenuineVerdicts(t *testing.T) {
	s, v := setup(t)
	for _, c := range []struct {
		device         []string
		rooted, strong bool
	}{
		{[]string{DeviceBasicIntegrity, DeviceIntegrity}, false, false},
		{[]string{DeviceBasicIntegrity, DeviceIntegrity, DeviceStrongIntegrity}, false, true},
		{[]string{DeviceBasicIntegrity}, true, false},
		{nil, true, false},
	} {
		p := playsim.Genuine(testPkg, testCert, "nonce-1", testNow.Add(-time.Minute))
		p.DeviceIntegrity.DeviceRecognitionVerdict = c.device
		got, err := v.Verify(token(t, s, p), "nonce-1")
		if err != nil {
			t.Fatalf("%v: %v", c.device, err)
		}
		if got.Rooted != c.rooted || got.Strong != c.strong || got.PackageName != testPkg || got.VersionCode != "42" {
			t.Fatalf("%v: verdict %+v", c.device, got)
		}
	}
	// The classic API binds with nonce instead of requestHash.
	p := playsim.Genuine(testPkg, testCert, "", testNow)
	p.RequestDetails.Nonce = "classic-nonce"
	if _, err := v.Verify(token(t, s, p), "classic-nonce"); err != nil {
		t.Fatalf("classic nonce: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	s, v := setup(t)
	other, _ := setup(t)
	genuine := func(mut func(*playsim.Payload)) playsim.Payload {
		p := playsim.Genuine(testPkg, testCert, "nonce-1", testNow.Add(-time.Minute))
		mut(&p)
		return p
	}
	good := token(t, s, genuine(func(*playsim.Payload) {}))
	parts := strings.Split(good, ".")
	tamperedTag := strings.Join(append(parts[:4:4], flip(parts[4])), ".")
	tamperedCipher := strings.Join(append(append(parts[:3:3], flip(parts[3])), parts[4]), ".")

	cases := []struct {
		name, token, binding, reason string
	}{
		{"wrong binding", good, "nonce-2", ReasonBinding},
		{"empty binding", good, "", ReasonBinding},
		{"tampered tag", tamperedTag, "nonce-1", ReasonDecrypt},
		{"tampered ciphertext", tamperedCipher, "nonce-1", ReasonDecrypt},
		{"another organisation's keys", token(t, other, genuine(func(*playsim.Payload) {})), "nonce-1", ReasonDecrypt},
		{"expired", token(t, s, genuine(func(p *playsim.Payload) {
			p.RequestDetails.TimestampMillis = "1764763200000" // a year before testNow
		})), "nonce-1", ReasonStale},
		{"from the future", token(t, s, genuine(func(p *playsim.Payload) {
			p.RequestDetails.TimestampMillis = "1796306400000"
		})), "nonce-1", ReasonStale},
		{"wrong package", token(t, s, genuine(func(p *playsim.Payload) {
			p.RequestDetails.RequestPackageName = "com.evil.clone"
		})), "nonce-1", ReasonPackage},
		{"wrong app package", token(t, s, genuine(func(p *playsim.Payload) {
			p.AppIntegrity.PackageName = "com.evil.clone"
		})), "nonce-1", ReasonPackage},
		{"wrong certificate", token(t, s, genuine(func(p *playsim.Payload) {
			p.AppIntegrity.CertificateSha256Digest = []string{playsim.CertificateDigest([]byte("resigned"))}
		})), "nonce-1", ReasonCertificate},
		{"sideloaded", token(t, s, genuine(func(p *playsim.Payload) {
			p.AppIntegrity.AppRecognitionVerdict = "UNRECOGNIZED_VERSION"
		})), "nonce-1", ReasonUnrecognized},
		{"no device verdict asked", token(t, s, genuine(func(p *playsim.Payload) {
			p.DeviceIntegrity = nil
		})), "nonce-1", ReasonNoDeviceClaim},
		{"not a JWE", "a.b.c", "nonce-1", ReasonMalformed},
		{"too large", strings.Repeat("a", MaxTokenSize+1), "nonce-1", ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := v.Verify(c.token, c.binding)
			if ReasonOf(err) != c.reason || got != nil {
				t.Fatalf("got %+v, %v; want refusal %s", got, err, c.reason)
			}
		})
	}
}

// flip changes the first character of a base64url segment.
func flip(seg string) string {
	if seg[0] == 'A' {
		return "B" + seg[1:]
	}
	return "A" + seg[1:]
}

func TestNewRefusesBadKeys(t *testing.T) {
	s, _ := setup(t)
	for _, c := range [][3]string{
		{"", s.DecryptionKey, s.VerificationKey},
		{testPkg, "c2hvcnQ=", s.VerificationKey},
		{testPkg, s.DecryptionKey, "not base64!"},
		{testPkg, s.DecryptionKey, s.DecryptionKey},
	} {
		if _, err := New(c[0], c[1], c[2]); err == nil {
			t.Errorf("New(%q, ...) accepted bad configuration", c[0])
		}
	}
}

// FuzzVerify feeds arbitrary tokens to the JWE and JWS decoders: refused with a reason, never
// a panic, never accepted.
func FuzzVerify(f *testing.F) {
	s, v := setup(f)
	f.Add(token(f, s, playsim.Genuine(testPkg, testCert, "n", testNow)))
	f.Add("eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0....")
	f.Add("a.b.c.d.e")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := v.Verify(tok, "other binding")
		if err == nil || got != nil || ReasonOf(err) == "" {
			t.Fatalf("fuzzed token: %+v, %v", got, err)
		}
	})
}
