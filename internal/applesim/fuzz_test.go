package applesim

import (
	"testing"

	"github.com/halemdm/hale/internal/testpki"
)

// FuzzHandleCommand feeds arbitrary server responses to the device's
// command decoder and executor: nothing may panic, and every command
// that can be attributed is answered with a well-formed result.
func FuzzHandleCommand(f *testing.F) {
	ca := testpki.NewCA(f, "applesim test CA")
	profile := mobileconfig(f, "org.hale.f", passcodePayload(6))
	signed, _ := sign(f, ca, profile)
	for _, seed := range [][]byte{
		commandPlist(f, "SecurityInfo", nil),
		commandPlist(f, "DeviceInformation", map[string]any{"Queries": []string{"OSVersion", "UDID"}}),
		commandPlist(f, "DeviceInformation", map[string]any{"Queries": "OSVersion"}),
		commandPlist(f, "ProfileList", nil),
		commandPlist(f, "InstallProfile", map[string]any{"Payload": profile}),
		commandPlist(f, "InstallProfile", map[string]any{"Payload": signed}),
		commandPlist(f, "InstallProfile", map[string]any{"Payload": "not data"}),
		commandPlist(f, "RemoveProfile", map[string]any{"Identifier": "org.hale.f"}),
		commandPlist(f, "DeviceLock", map[string]any{"PIN": "123456", "Message": "m"}),
		commandPlist(f, "EnableLostMode", map[string]any{"PhoneNumber": "1"}),
		commandPlist(f, "DisableLostMode", nil),
		commandPlist(f, "ClearPasscode", map[string]any{"UnlockToken": []byte{1, 2}}),
		commandPlist(f, "EraseDevice", map[string]any{"PIN": 123456}),
		commandPlist(f, "Unknown", nil),
		mustMarshal(f, map[string]any{"CommandUUID": "X", "Command": "nope"}),
		mustMarshal(f, map[string]any{"Command": map[string]any{"RequestType": "ProfileList"}}),
		[]byte(`<?xml version="1.0"?><plist><dict><key>CommandUUID</key><string>A</string><key>Command</key><dict><key>RequestType</key><integer>99999999999999999999999</integer></dict></dict></plist>`),
		[]byte("bplist00\xd1\x01\x02"),
		[]byte(""),
	} {
		f.Add(seed)
	}
	dev, err := New("http://127.0.0.1:1/mdm")
	if err != nil {
		f.Fatal(err)
	}
	valid := map[string]bool{StatusAcknowledged: true, StatusError: true, StatusNotNow: true, StatusCommandFormatError: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		dev.mu.Lock()
		dev.state, dev.history = IOSState(), nil
		dev.mu.Unlock()
		rec, _, err := dev.handle(data)
		if err != nil {
			return
		}
		if !valid[rec.Status] || rec.CommandUUID == "" {
			t.Fatalf("bad record: %+v", rec)
		}
		out, err := decodeDict(rec.Response, MaxResponseSize)
		if err != nil {
			t.Fatalf("result does not parse: %v", err)
		}
		if out["CommandUUID"] != rec.CommandUUID || out["Status"] != rec.Status {
			t.Fatalf("result %v does not match record %+v", out, rec)
		}
	})
}

// FuzzParseProfile checks that no profile, signed or not, panics the
// parser, and that accepted profiles carry the required keys.
func FuzzParseProfile(f *testing.F) {
	ca := testpki.NewCA(f, "applesim test CA")
	profile := mobileconfig(f, "org.hale.f", passcodePayload(6))
	signed, _ := sign(f, ca, profile)
	f.Add(profile)
	f.Add(signed)
	f.Add(signed[:len(signed)/2])
	f.Add([]byte{0x30, 0x80, 0x06, 0x09})
	f.Add([]byte(`<plist><dict><key>PayloadContent</key><array><string/></array></dict></plist>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile(data)
		if err != nil {
			return
		}
		if p.Identifier == "" || p.UUID == "" || p.Version != 1 {
			t.Fatalf("accepted profile without required keys: %+v", p)
		}
		for _, pl := range p.Payloads {
			if pl.Type == "" || pl.Identifier == "" || pl.UUID == "" || pl.Content == nil {
				t.Fatalf("accepted payload without required keys: %+v", pl)
			}
		}
	})
}

// FuzzParseEnrollmentProfile checks the enrollment profile reader on
// arbitrary input: no panics, and accepted profiles meet its checks.
func FuzzParseEnrollmentProfile(f *testing.F) {
	ca := testpki.NewCA(f, "applesim test CA")
	f.Add(enrollmentProfile(f, ca.Cert.Raw, nil))
	f.Add(enrollmentProfile(f, ca.Cert.Raw, map[string]any{"ServerURL": "http://x"}))
	f.Add(enrollmentProfile(f, []byte{0x30}, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		ep, err := ParseEnrollmentProfile(data)
		if err != nil {
			return
		}
		if !isHTTPS(ep.ServerURL) || ep.AccessRights <= 0 || ep.IdentityCertificateUUID == "" {
			t.Fatalf("accepted an invalid enrollment profile: %+v", ep)
		}
	})
}
