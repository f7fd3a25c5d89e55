package enroll

import (
	"crypto/x509"
	"testing"

	"github.com/halemdm/hale/internal/applesim"
)

// TestProfileInstallsOnSimulator reads the signed profile the way the shared Apple device
// simulator does when a user installs it.
func TestProfileInstallsOnSimulator(t *testing.T) {
	root := newCert(t, "Hale Root", ecKey(t), nil, true)
	leaf := newCert(t, "mdm.example.org", ecKey(t), root, false)
	params := testParams(root.cert)
	raw, err := AppleProfile(params)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := SignProfile(raw, leaf.cert, leaf.key, []*x509.Certificate{root.cert})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := applesim.ParseEnrollmentProfile(signed)
	if err != nil {
		t.Fatalf("simulator rejects the profile: %v", err)
	}
	if !ep.Profile.Signed {
		t.Error("simulator did not see a signature")
	}
	if ep.ServerURL != params.ServerURL || ep.Topic != params.Topic || !ep.SignMessage || ep.AccessRights != DefaultAccessRights {
		t.Errorf("MDM payload as read = %+v", ep)
	}
	if ep.SCEP == nil || ep.SCEP.Challenge != params.Challenge || ep.SCEP.KeySize != 2048 || ep.SCEP.KeyUsage != 5 ||
		ep.SCEP.Subject[len(ep.SCEP.Subject)-1] != [2]string{"CN", params.SubjectCN} {
		t.Errorf("SCEP identity as read = %+v", ep.SCEP)
	}
	if len(ep.RootCertificates) != 1 || !ep.RootCertificates[0].Equal(root.cert) {
		t.Error("root certificate not carried")
	}
}
