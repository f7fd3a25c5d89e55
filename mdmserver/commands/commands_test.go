package commands

import (
	"testing"

	"github.com/micromdm/nanomdm/mdm"
)

const securityInfo = `<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>CommandUUID</key><string>C1</string><key>Status</key><string>Acknowledged</string>
<key>UDID</key><string>U1</string>
<key>SecurityInfo</key><dict>
  <key>HardwareEncryptionCaps</key><integer>3</integer>
  <key>PasscodePresent</key><true/><key>PasscodeCompliant</key><false/>
  <key>PasscodeCompliantWithProfiles</key><true/>
</dict></dict></plist>`

func TestParseInfersRequestType(t *testing.T) {
	for body, want := range map[string]string{
		securityInfo: "SecurityInfo",
		`<plist><dict><key>QueryResponses</key><dict><key>OSVersion</key><string>17.4</string></dict></dict></plist>`:                  "DeviceInformation",
		`<plist><dict><key>ProfileList</key><array><dict><key>PayloadIdentifier</key><string>p</string></dict></array></dict></plist>`: "ProfileList",
	} {
		res := &Result{}
		if err := parse([]byte(body), res); err != nil || res.RequestType != want {
			t.Errorf("parse gave %q, %v; want %s", res.RequestType, err, want)
		}
	}
	if err := parse([]byte(`<plist><dict><key>SecurityInfo</key><string>x</string></dict></plist>`), &Result{}); err == nil {
		t.Error("a SecurityInfo of the wrong type parsed")
	}
}

func TestEnrollmentID(t *testing.T) {
	dev := &mdm.Enrollment{UDID: "U1"}
	user := &mdm.Enrollment{UDID: "U1", UserID: "USER"}
	if EnrollmentID(dev) != "U1" || EnrollmentID(user) != "U1:USER" || EnrollmentID(&mdm.Enrollment{}) != "" {
		t.Fatal("enrollment ids do not match nanomdm's")
	}
}

func FuzzParseResult(f *testing.F) {
	f.Add([]byte(securityInfo))
	f.Add([]byte(`<plist><dict><key>ProfileList</key><array/></dict></plist>`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r1, r2 Result
		err1, err2 := parse(b, &r1), parse(b, &r2)
		if (err1 == nil) != (err2 == nil) || r1.RequestType != r2.RequestType {
			t.Fatal("parse is not deterministic")
		}
	})
}
