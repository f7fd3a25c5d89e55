package rootpin

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/testpki"
)

func TestParseFingerprint(t *testing.T) {
	want := strings.Repeat("ab", 32)
	for _, in := range []string{want, strings.ToUpper(want), " " + want + "\n", strings.Join(strings.SplitAfterN(want, "b", 32), ":")} {
		if got, err := ParseFingerprint(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"", "abcd", strings.Repeat("zz", 32), want + "00"} {
		if _, err := ParseFingerprint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestRootAndChain(t *testing.T) {
	ca, other := testpki.NewCA(t, "root"), testpki.NewCA(t, "other")
	root, err := ParseRoot(ca.PEM)
	if err != nil || Fingerprint(root) == Fingerprint(other.Cert) {
		t.Fatalf("root: %v", err)
	}
	leaf, _ := ca.Issue(t, "server", testpki.ServerFor("mdm.example.org"))
	if err := VerifyChain([]*x509.Certificate{leaf}, root, "mdm.example.org"); err != nil {
		t.Errorf("good chain: %v", err)
	}
	if VerifyChain([]*x509.Certificate{leaf}, root, "evil.example.org") == nil || VerifyChain(nil, root, "mdm.example.org") == nil {
		t.Error("a wrong name or no chain verified")
	}
	otherRoot, _ := ParseRoot(other.PEM)
	if VerifyChain([]*x509.Certificate{leaf}, otherRoot, "mdm.example.org") == nil {
		t.Error("a chain to another root verified")
	}
	leafPEM := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if _, err := ParseRoot(leafPEM); err == nil {
		t.Error("garbage parsed")
	}
}
