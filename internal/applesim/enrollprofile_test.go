package applesim

import (
	"context"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/testpki"
)

// enrollmentProfile builds an enrollment profile the way an MDM server
// would: root certificate, SCEP identity and MDM payloads.
func enrollmentProfile(t testing.TB, rootDER []byte, mdm map[string]any) []byte {
	t.Helper()
	scepUUID := "8F0E9A27-3F4A-4D0B-9E53-0A7B1C2D3E4F"
	base := map[string]any{
		"PayloadType": MDMPayloadType, "PayloadVersion": 1,
		"PayloadIdentifier": "org.hale.mdm", "PayloadUUID": randid.UUID(),
		"ServerURL": "https://mdm.example.org/mdm", "Topic": DefaultTopic,
		"IdentityCertificateUUID": scepUUID, "AccessRights": 8191, "SignMessage": true,
	}
	for k, v := range mdm {
		if v == nil {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	return mobileconfig(t, "org.hale.enroll",
		map[string]any{
			"PayloadType": RootPayloadType, "PayloadVersion": 1,
			"PayloadIdentifier": "org.hale.root", "PayloadUUID": randid.UUID(),
			"PayloadContent": rootDER,
		},
		map[string]any{
			"PayloadType": SCEPPayloadType, "PayloadVersion": 1,
			"PayloadIdentifier": "org.hale.scep", "PayloadUUID": scepUUID,
			"PayloadContent": map[string]any{
				"URL": "https://mdm.example.org/scep", "Challenge": "one-time", "Keysize": 2048,
				"Key Type": "RSA", "Key Usage": 5,
				"Subject": []any{[]any{[]any{"O", "Hale"}}, []any{[]any{"CN", "device"}}},
			},
		},
		base,
	)
}

func TestEnrollmentProfileDrivesDevice(t *testing.T) {
	h := newHarness(t, false)
	raw := enrollmentProfile(t, h.server.Certificate().Raw, map[string]any{
		"ServerURL": h.server.URL + "/mdm", "CheckInURL": h.server.URL + "/mdm",
	})
	signed, _ := sign(t, h.ca, raw)
	ep, err := ParseEnrollmentProfile(signed)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Topic != DefaultTopic || !ep.SignMessage || ep.AccessRights != 8191 || len(ep.RootCertificates) != 1 {
		t.Errorf("parsed: %+v", ep)
	}
	if s := ep.SCEP; s == nil || s.Challenge != "one-time" || s.KeySize != 2048 || s.KeyUsage != 5 ||
		len(s.Subject) != 2 || s.Subject[1] != [2]string{"CN", "device"} {
		t.Errorf("SCEP payload: %+v", ep.SCEP)
	}
	// The identity would come from SCEP; here the test CA issues it.
	cert, key := h.ca.Issue(t, "device")
	dev, err := New(ep.ServerURL, append(ep.Options(), WithIdentity(cert, key))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Enroll(context.Background()); err != nil {
		t.Fatalf("enrolling with the profile's settings (trusting only its root payload): %v", err)
	}
}

func TestEnrollmentProfileRefusals(t *testing.T) {
	ca := testpki.NewCA(t, "applesim test CA")
	for name, tc := range map[string]struct {
		mdm  map[string]any
		want string
	}{
		"http server":       {map[string]any{"ServerURL": "http://mdm.example.org/mdm"}, "ServerURL"},
		"http check-in":     {map[string]any{"CheckInURL": "http://mdm.example.org/c"}, "CheckInURL"},
		"bad topic":         {map[string]any{"Topic": "com.example.push"}, "Topic"},
		"no rights":         {map[string]any{"AccessRights": nil}, "AccessRights"},
		"dangling identity": {map[string]any{"IdentityCertificateUUID": "nope"}, "names no payload"},
		"no identity":       {map[string]any{"IdentityCertificateUUID": nil}, "IdentityCertificateUUID"},
		"not mdm":           {map[string]any{"PayloadType": "com.apple.wifi.managed"}, "want exactly 1"},
	} {
		_, err := ParseEnrollmentProfile(enrollmentProfile(t, ca.Cert.Raw, tc.mdm))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
	if _, err := ParseEnrollmentProfile(enrollmentProfile(t, []byte("not DER"), nil)); err == nil {
		t.Error("accepted a root payload that is not a certificate")
	}
}
