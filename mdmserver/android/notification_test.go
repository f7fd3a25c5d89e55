package android

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/internal/amapischema"
	"github.com/halemdm/hale/policies"
)

func pushBody(typ, id string, data []byte) []byte {
	b, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data),
		"attributes": map[string]string{"notificationType": typ}, "messageId": id}, "subscription": "projects/p/subscriptions/s"})
	return b
}

const sampleDevice = `{"name":"enterprises/LC01/devices/3a1b","state":"ACTIVE","appliedState":"ACTIVE",
"policyName":"enterprises/LC01/policies/hale-hipaa","appliedPolicyName":"enterprises/LC01/policies/hale-hipaa",
"policyCompliant":false,"nonComplianceDetails":[{"settingName":"screenCaptureDisabled","nonComplianceReason":"USER_ACTION"},
{"settingName":"passwordPolicies","nonComplianceReason":"USER_ACTION"}],
"lastStatusReportTime":"2026-03-01T11:59:00Z","ownership":"COMPANY_OWNED","managementMode":"DEVICE_OWNER",
"softwareInfo":{"androidVersion":"15","securityPatchLevel":"2026-02-05","androidBuildNumber":"AP4A"},
"deviceSettings":{"isEncrypted":true,"encryptionStatus":"ACTIVE_PER_USER","isDeviceSecure":true},
"securityPosture":{"devicePosture":"SECURE"}}`

// The sample is a Device by the discovery document, so the tests below feed the mapping what
// AMAPI sends.
func TestSampleDeviceMatchesDiscovery(t *testing.T) {
	doc, err := amapischema.Load()
	if err != nil {
		t.Fatal(err)
	}
	if errs := doc.Check("Device", []byte(sampleDevice)); len(errs) > 0 {
		t.Fatal(errs)
	}
}

func TestParseNotification(t *testing.T) {
	n, err := ParseNotification(pushBody(TypeStatusReport, "123", []byte(sampleDevice)))
	if err != nil || n.MessageID != "123" || n.Device == nil || n.Device.Name != "enterprises/LC01/devices/3a1b" {
		t.Fatalf("%+v, %v", n, err)
	}
	op := `{"name":"enterprises/LC01/devices/3a1b/operations/77","done":true}`
	if n, err := ParseNotification(pushBody(TypeCommand, "124", []byte(op))); err != nil || n.Operation == nil || !n.Operation.Done {
		t.Fatalf("command: %+v, %v", n, err)
	}
	if n, err := ParseNotification(pushBody(TypeTest, "125", []byte(`{}`))); err != nil || n.Device != nil || n.Operation != nil {
		t.Fatalf("test notification: %+v, %v", n, err)
	}
	for name, body := range map[string][]byte{
		"not JSON":          []byte("{"),
		"no message":        []byte(`{"subscription":"s"}`),
		"no ID":             pushBody(TypeStatusReport, "", []byte(sampleDevice)),
		"control in ID":     pushBody(TypeStatusReport, "a\x00b", []byte(sampleDevice)),
		"no type":           pushBody("", "1", []byte(sampleDevice)),
		"device not JSON":   pushBody(TypeStatusReport, "1", []byte("[1]")),
		"device no name":    pushBody(TypeStatusReport, "1", []byte(`{"state":"ACTIVE"}`)),
		"device bad name":   pushBody(TypeStatusReport, "1", []byte(`{"name":"enterprises/LC01/devices/../x"}`)),
		"trailing data":     pushBody(TypeStatusReport, "1", []byte(sampleDevice+`{}`)),
		"operation no name": pushBody(TypeCommand, "1", []byte(`{"done":true}`)),
		"too large":         make([]byte, MaxPushBody+1),
	} {
		if _, err := ParseNotification(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParseNotification(f *testing.F) {
	f.Add(pushBody(TypeStatusReport, "1", []byte(sampleDevice)))
	f.Add(pushBody(TypeCommand, "2", []byte(`{"name":"enterprises/a/devices/b/operations/c","done":true,"error":{"code":3}}`)))
	f.Add(pushBody(TypeEnrollment, "3", []byte(`{"name":"enterprises/a/devices/b","nonComplianceDetails":[null,{}],"securityPosture":{"postureDetails":[null]}}`)))
	f.Add([]byte(`{"message":{"data":"","messageId":"x","attributes":{"notificationType":"STATUS_REPORT"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseNotification(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if n.MessageID == "" || len(n.MessageID) > maxIDLen {
			t.Fatalf("accepted message ID %q", n.MessageID)
		}
		if n.Device != nil {
			// Whatever parsed maps to a posture without panicking.
			p := &policies.Posture{}
			postureUpdate(n.Device, time.Now())(p)
			if p.Platform != policies.PlatformAndroid || p.NonCompliance == nil || len(p.NonCompliance.Value) > maxNonCompliance+1 {
				t.Fatalf("posture %+v", p)
			}
		}
	})
}

func TestPostureUpdate(t *testing.T) {
	var d androidmanagement.Device
	if err := json.Unmarshal([]byte(sampleDevice), &d); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := &policies.Posture{Platform: policies.PlatformAndroid, SIPEnabled: policies.Observe(true, policies.ProvenanceAgent, now)}
	postureUpdate(&d, now)(p)
	at := time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC)
	switch {
	case p.OS == nil || p.OS.Value.Version != "15" || p.OS.Value.SecurityPatch != "2026-02-05" || !p.OS.ObservedAt.Equal(at) || p.OS.Source != policies.ProvenanceMDM:
		t.Errorf("os %+v", p.OS)
	case p.DiskEncrypted == nil || !p.DiskEncrypted.Value:
		t.Errorf("encryption %+v", p.DiskEncrypted)
	case p.PasscodePresent == nil || !p.PasscodePresent.Value:
		t.Errorf("passcode %+v", p.PasscodePresent)
	case p.PasscodeCompliant == nil || p.PasscodeCompliant.Value:
		t.Errorf("a password setting not in force must make the passcode noncompliant: %+v", p.PasscodeCompliant)
	case p.NonCompliance == nil || len(p.NonCompliance.Value) != 2 || p.NonCompliance.Value[0] != "passwordPolicies":
		t.Errorf("noncompliance %+v", p.NonCompliance)
	case p.Jailbroken == nil || p.Jailbroken.Value || p.Jailbroken.Source != policies.ProvenanceAttested:
		t.Errorf("integrity %+v", p.Jailbroken)
	case p.SIPEnabled == nil:
		t.Error("claims of other sources are kept")
	}
	// A report from the future is stamped now.
	d.LastStatusReportTime = "2027-01-01T00:00:00Z"
	postureUpdate(&d, now)(p)
	if !p.OS.ObservedAt.Equal(now) {
		t.Errorf("future report stamped %v", p.OS.ObservedAt)
	}

	for _, c := range []struct {
		sp     *androidmanagement.SecurityPosture
		want   *bool
		source policies.Provenance
	}{
		{nil, nil, ""},
		{&androidmanagement.SecurityPosture{DevicePosture: "POSTURE_UNSPECIFIED"}, nil, ""},
		{&androidmanagement.SecurityPosture{DevicePosture: "SECURE"}, ptr(false), policies.ProvenanceAttested},
		{&androidmanagement.SecurityPosture{DevicePosture: "POTENTIALLY_COMPROMISED"}, ptr(true), policies.ProvenanceAttested},
		{&androidmanagement.SecurityPosture{DevicePosture: "AT_RISK", PostureDetails: []*androidmanagement.PostureDetail{{SecurityRisk: "UNKNOWN_OS"}}}, ptr(true), policies.ProvenanceAttested},
		{&androidmanagement.SecurityPosture{DevicePosture: "AT_RISK", PostureDetails: []*androidmanagement.PostureDetail{{SecurityRisk: "HARDWARE_BACKED_EVALUATION_FAILED"}}}, ptr(false), policies.ProvenanceMDM},
	} {
		got := integrity(c.sp, now)
		if (got == nil) != (c.want == nil) || got != nil && (got.Value != *c.want || got.Source != c.source) {
			t.Errorf("integrity(%+v) = %+v", c.sp, got)
		}
	}
	// ACTIVE_DEFAULT_KEY is not encryption Hale accepts, and a pending policy is noncompliance.
	d.DeviceSettings.EncryptionStatus = "ACTIVE_DEFAULT_KEY"
	d.NonComplianceDetails, d.AppliedPolicyName = nil, "enterprises/LC01/policies/old"
	postureUpdate(&d, now)(p)
	if p.DiskEncrypted.Value || len(p.NonCompliance.Value) != 1 || p.NonCompliance.Value[0] != "policy" || !p.PasscodeCompliant.Value {
		t.Errorf("posture %+v %+v %+v", p.DiskEncrypted, p.NonCompliance, p.PasscodeCompliant)
	}
}

func ptr[T any](v T) *T { return &v }
