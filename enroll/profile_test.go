package enroll

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"
)

type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// newCert issues a certificate for key under parent (self-signed when parent is nil).
func newCert(t *testing.T, cn string, key crypto.Signer, parent *testCert, isCA bool) *testCert {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Hale test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key}
}

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testParams(root *x509.Certificate) ProfileParams {
	return ProfileParams{
		Organization: "Example Clinic",
		RootCA:       root,
		SCEPURL:      "https://mdm.example.org/scep",
		Challenge:    "hale_scep_0123",
		SubjectCN:    "hale-device e_0123456789abcdef",
		SubjectO:     "Example Clinic",
		ServerURL:    "https://mdm.example.org/mdm",
		Topic:        "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555",
	}
}

// decodedProfile mirrors the rendered document for assertions.
type decodedProfile struct {
	PayloadType    string
	PayloadVersion int
	PayloadUUID    string
	PayloadContent []map[string]any
}

func TestAppleProfile(t *testing.T) {
	root := newCert(t, "Hale Root", ecKey(t), nil, true)
	raw, err := AppleProfile(testParams(root.cert))
	if err != nil {
		t.Fatal(err)
	}
	var p decodedProfile
	if err := plist.Unmarshal(raw, &p); err != nil {
		t.Fatalf("rendered profile does not parse: %v\n%s", err, raw)
	}
	if p.PayloadType != "Configuration" || p.PayloadVersion != 1 || len(p.PayloadContent) != 3 {
		t.Fatalf("top level = %+v", p)
	}
	byType := map[string]map[string]any{}
	uuids := map[string]bool{p.PayloadUUID: true}
	for _, pl := range p.PayloadContent {
		byType[pl["PayloadType"].(string)] = pl
		uuids[pl["PayloadUUID"].(string)] = true
	}
	if len(uuids) != 4 {
		t.Error("payload UUIDs are not distinct")
	}
	rootPl := byType["com.apple.security.root"]
	if !bytes.Equal(rootPl["PayloadContent"].([]byte), root.cert.Raw) {
		t.Error("root payload does not carry the DER root")
	}
	scep := byType["com.apple.security.scep"]
	sc := scep["PayloadContent"].(map[string]any)
	for k, want := range map[string]any{
		"URL": "https://mdm.example.org/scep", "Challenge": "hale_scep_0123", "Keysize": uint64(2048),
		"Key Type": "RSA", "Key Usage": uint64(5), "Retries": uint64(3), "RetryDelay": uint64(10),
	} {
		if sc[k] != want {
			t.Errorf("SCEP %s = %#v, want %#v", k, sc[k], want)
		}
	}
	subj := sc["Subject"].([]any)
	last := subj[len(subj)-1].([]any)[0].([]any)
	if last[0] != "CN" || last[1] != "hale-device e_0123456789abcdef" {
		t.Errorf("SCEP subject = %#v", subj)
	}
	mdm := byType["com.apple.mdm"]
	for k, want := range map[string]any{
		"ServerURL": "https://mdm.example.org/mdm", "CheckInURL": "https://mdm.example.org/mdm",
		"Topic": testParams(nil).Topic, "IdentityCertificateUUID": scep["PayloadUUID"],
		"SignMessage": true, "CheckOutWhenRemoved": true, "AccessRights": uint64(1087),
	} {
		if mdm[k] != want {
			t.Errorf("MDM %s = %#v, want %#v", k, mdm[k], want)
		}
	}
	if caps := mdm["ServerCapabilities"].([]any); len(caps) != 1 || caps[0] != "com.apple.mdm.per-user-connections" {
		t.Errorf("ServerCapabilities = %#v", caps)
	}
	// Keys are sorted: AccessRights comes before Topic in the MDM dictionary.
	if s := string(raw); strings.Index(s, "<key>AccessRights</key>") > strings.Index(s, "<key>Topic</key>") {
		t.Error("dictionary keys are not in sorted order")
	}
}

func TestAppleProfileRejectsBadParams(t *testing.T) {
	root := newCert(t, "Hale Root", ecKey(t), nil, true)
	for name, mut := range map[string]func(*ProfileParams){
		"no root":          func(p *ProfileParams) { p.RootCA = nil },
		"no challenge":     func(p *ProfileParams) { p.Challenge = "" },
		"no CN":            func(p *ProfileParams) { p.SubjectCN = "" },
		"http server":      func(p *ProfileParams) { p.ServerURL = "http://mdm.example.org/mdm" },
		"relative scep":    func(p *ProfileParams) { p.SCEPURL = "/scep" },
		"bad topic":        func(p *ProfileParams) { p.Topic = "com.example.push" },
		"install w/o view": func(p *ProfileParams) { p.AccessRights = RightInstallProfiles | RightErase },
		"unknown rights":   func(p *ProfileParams) { p.AccessRights = 1 << 20 },
		"control chars":    func(p *ProfileParams) { p.Organization = "a\x07b" },
	} {
		p := testParams(root.cert)
		mut(&p)
		if _, err := AppleProfile(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSignProfile(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	root := newCert(t, "Hale Root", ecKey(t), nil, true)
	inter := newCert(t, "Hale Intermediate", ecKey(t), root, true)
	for _, tc := range []struct {
		name  string
		key   crypto.Signer
		chain []*x509.Certificate
	}{
		{"ecdsa leaf with chain", ecKey(t), []*x509.Certificate{inter.cert, root.cert}},
		{"rsa leaf, intermediate only", rsaKey, []*x509.Certificate{inter.cert}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf := newCert(t, "mdm.example.org", tc.key, inter, false)
			profile, err := AppleProfile(testParams(root.cert))
			if err != nil {
				t.Fatal(err)
			}
			signed, err := SignProfile(profile, leaf.cert, leaf.key, tc.chain)
			if err != nil {
				t.Fatal(err)
			}
			p7, err := pkcs7.Parse(signed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p7.Content, profile) {
				t.Fatal("signed content differs from the profile")
			}
			pool := x509.NewCertPool()
			pool.AddCert(root.cert)
			if err := p7.VerifyWithChain(pool); err != nil {
				t.Fatalf("verify against the test CA: %v", err)
			}
			other := x509.NewCertPool()
			other.AddCert(newCert(t, "Other Root", ecKey(t), nil, true).cert)
			if err := p7.VerifyWithChain(other); err == nil {
				t.Fatal("verified against an unrelated root")
			}
			if len(p7.Signers) != 1 || !p7.Signers[0].DigestAlgorithm.Algorithm.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
				t.Fatal("signer does not use SHA-256")
			}
			// A flipped content byte must fail verification.
			tampered := bytes.Replace(signed, []byte("Configuration"), []byte("Configuratioo"), 1)
			if p7t, err := pkcs7.Parse(tampered); err == nil && p7t.VerifyWithChain(pool) == nil {
				t.Fatal("tampered profile verified")
			}
			opensslVerify(t, signed, profile, root.cert)
		})
	}
}

// opensslVerify checks the signature with an independent implementation when openssl is present.
func opensslVerify(t *testing.T, signed, content []byte, root *x509.Certificate) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed; independent verification skipped")
		return
	}
	dir := t.TempDir()
	in, ca, out := filepath.Join(dir, "signed.der"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "out")
	os.WriteFile(in, signed, 0o600)
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o600)
	cmd := exec.Command(bin, "smime", "-verify", "-inform", "DER", "-in", in, "-CAfile", ca, "-purpose", "any", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl smime -verify: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatal("openssl's verified content differs from the profile")
	}
}

func TestSignProfileRejectsMismatchedKey(t *testing.T) {
	root := newCert(t, "Hale Root", ecKey(t), nil, true)
	if _, err := SignProfile([]byte("x"), root.cert, ecKey(t), nil); err == nil {
		t.Error("signed with a key that is not the certificate's")
	}
	inter := newCert(t, "Hale Intermediate", ecKey(t), root, true)
	leaf := newCert(t, "leaf", ecKey(t), inter, false)
	if _, err := SignProfile([]byte("x"), leaf.cert, leaf.key, []*x509.Certificate{root.cert}); err == nil {
		t.Error("accepted a chain whose first certificate is not the issuer")
	}
}
