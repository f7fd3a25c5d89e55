package applesim

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/micromdm/plist"
	"github.com/smallstep/pkcs7"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/internal/testpki"
)

// Result shapes per Apple's device management schema, decoded with
// micromdm/plist as a server would.
type (
	errorChain struct {
		ErrorCode            int
		ErrorDomain          string
		LocalizedDescription string
	}
	baseResult struct {
		CommandUUID string
		Status      string
		UDID        string
		ErrorChain  []errorChain
	}
	securityInfoResult struct {
		baseResult
		SecurityInfo struct {
			HardwareEncryptionCaps           int
			PasscodePresent                  bool
			PasscodeCompliant                bool
			PasscodeCompliantWithProfiles    bool
			FDE_Enabled                      bool
			SystemIntegrityProtectionEnabled bool
			FirewallSettings                 struct{ FirewallEnabled bool }
		}
	}
	deviceInfoResult struct {
		baseResult
		QueryResponses map[string]any
	}
	profileListResult struct {
		baseResult
		ProfileList []struct {
			PayloadIdentifier  string
			PayloadUUID        string
			PayloadDisplayName string
			PayloadVersion     int
			IsManaged          bool
			SignerCertificates [][]byte
			PayloadContent     []struct {
				PayloadType       string
				PayloadIdentifier string
				PayloadUUID       string
				PayloadVersion    int
			}
		}
	}
	deviceLockResult struct {
		baseResult
		MessageResult string
	}
)

// mobileconfig builds a configuration profile with the given payloads.
func mobileconfig(t testing.TB, id string, payloads ...map[string]any) []byte {
	t.Helper()
	content := make([]any, len(payloads))
	for i, p := range payloads {
		content[i] = p
	}
	b, err := plist.Marshal(map[string]any{
		"PayloadType":        "Configuration",
		"PayloadVersion":     1,
		"PayloadIdentifier":  id,
		"PayloadUUID":        randid.UUID(),
		"PayloadDisplayName": "Hale " + id,
		"PayloadContent":     content,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func passcodePayload(minLength int) map[string]any {
	return map[string]any{
		"PayloadType":       PasscodePolicyPayloadType,
		"PayloadVersion":    1,
		"PayloadIdentifier": "org.hale.passcode",
		"PayloadUUID":       randid.UUID(),
		"forcePIN":          true,
		"minLength":         minLength,
		"maxInactivity":     5,
	}
}

// sign wraps data in a CMS signature by a fresh signer.
func sign(t testing.TB, ca *testpki.CA, data []byte) ([]byte, *x509.Certificate) {
	t.Helper()
	cert, key := ca.Issue(t, "profile signer")
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(cert, key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	out, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out, cert
}

func TestEndToEndWithPushes(t *testing.T) {
	h := newHarness(t, false)
	dev := h.newDevice(t, WithSerialNumber("C02XK1234567"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	loopDone := make(chan error, 1)
	go func() { loopDone <- dev.RunPushLoop(ctx, h.apns) }()

	// A policy demanding 8 characters, while the user has 6 digits.
	profile, signer := sign(t, h.ca, mobileconfig(t, "org.hale.policy", passcodePayload(8)))
	udid := dev.UDID()
	siBefore := h.enqueue(t, udid, "SecurityInfo", nil)
	di := h.enqueue(t, udid, "DeviceInformation", map[string]any{
		"Queries": []string{"OSVersion", "BuildVersion", "ProductName", "Model", "SerialNumber", "UDID", "IsSupervised", "DeviceName", "NoSuchQuery"},
	})
	install := h.enqueue(t, udid, "InstallProfile", map[string]any{"Payload": profile})
	list := h.enqueue(t, udid, "ProfileList", map[string]any{"ManagedOnly": true})
	siAfter := h.enqueue(t, udid, "SecurityInfo", nil)
	lock := h.enqueue(t, udid, "DeviceLock", map[string]any{"Message": "Call IT", "PhoneNumber": "555-0100"})
	h.push(t, udid)

	// The fake received exactly the push nanomdm sent for this device.
	pushes := h.apns.PushesFor(dev.PushToken())
	if len(pushes) != 1 || pushes[0].PushMagic != dev.PushMagic() || pushes[0].Topic != DefaultTopic {
		t.Fatalf("pushes at the fake: %+v", pushes)
	}

	var si securityInfoResult
	unmarshal(t, h.result(t, siBefore), &si)
	if si.Status != StatusAcknowledged || si.UDID != udid || si.CommandUUID != siBefore {
		t.Errorf("SecurityInfo result header: %+v", si.baseResult)
	}
	if s := si.SecurityInfo; s.HardwareEncryptionCaps != 3 || !s.PasscodePresent || !s.PasscodeCompliant || !s.PasscodeCompliantWithProfiles {
		t.Errorf("SecurityInfo before the policy: %+v", s)
	}

	var info deviceInfoResult
	unmarshal(t, h.result(t, di), &info)
	q := info.QueryResponses
	if info.Status != StatusAcknowledged || q["OSVersion"] != "17.5.1" || q["SerialNumber"] != "C02XK1234567" ||
		q["UDID"] != udid || q["IsSupervised"] != true || q["ProductName"] != "iPhone15,2" || q["BuildVersion"] != "21F90" {
		t.Errorf("DeviceInformation: %+v", info)
	}
	if _, ok := q["NoSuchQuery"]; ok || len(q) != 8 {
		t.Errorf("DeviceInformation answered %d queries (%v), want the 8 known ones", len(q), q)
	}

	var inst baseResult
	unmarshal(t, h.result(t, install), &inst)
	if inst.Status != StatusAcknowledged {
		t.Fatalf("InstallProfile: %+v", inst)
	}

	var pl profileListResult
	unmarshal(t, h.result(t, list), &pl)
	if len(pl.ProfileList) != 1 {
		t.Fatalf("ProfileList: %+v", pl)
	}
	p := pl.ProfileList[0]
	if p.PayloadIdentifier != "org.hale.policy" || p.PayloadVersion != 1 || !p.IsManaged || p.PayloadDisplayName != "Hale org.hale.policy" ||
		len(p.SignerCertificates) != 1 || string(p.SignerCertificates[0]) != string(signer.Raw) ||
		len(p.PayloadContent) != 1 || p.PayloadContent[0].PayloadType != PasscodePolicyPayloadType || p.PayloadContent[0].PayloadUUID == "" {
		t.Errorf("ProfileList entry: %+v", p)
	}

	unmarshal(t, h.result(t, siAfter), &si)
	if s := si.SecurityInfo; !s.PasscodePresent || s.PasscodeCompliant || s.PasscodeCompliantWithProfiles {
		t.Errorf("SecurityInfo under an 8-character policy with a 6-digit passcode: %+v", s)
	}

	var lr deviceLockResult
	unmarshal(t, h.result(t, lock), &lr)
	if lr.Status != StatusAcknowledged || lr.MessageResult != "Success" {
		t.Errorf("DeviceLock: %+v", lr)
	}

	st := dev.State()
	if !st.Locked || st.LockMessage != "Call IT" {
		t.Errorf("state after DeviceLock: locked=%v message=%q", st.Locked, st.LockMessage)
	}
	installed, ok := st.Profile("org.hale.policy")
	if !ok || !installed.Signed || len(installed.Payloads) != 1 {
		t.Fatalf("installed profile: %+v", installed)
	}
	if v, _ := getInt(installed.Payloads[0].Content, "minLength"); v != 8 {
		t.Errorf("installed passcode payload content: %v", installed.Payloads[0].Content)
	}
	if n := len(dev.Commands()); n != 6 {
		t.Errorf("device handled %d commands, want 6", n)
	}

	// The user changes to a compliant passcode: no command needed.
	dev.SetPasscode(8, true, false)
	compliant := h.enqueue(t, udid, "SecurityInfo", nil)
	h.push(t, udid)
	unmarshal(t, h.result(t, compliant), &si)
	if s := si.SecurityInfo; !s.PasscodeCompliant || !s.PasscodeCompliantWithProfiles {
		t.Errorf("SecurityInfo after a compliant passcode: %+v", s)
	}

	// Wipe: acknowledged, then the device goes silent.
	erase := h.enqueue(t, udid, "EraseDevice", nil)
	after := h.enqueue(t, udid, "ProfileList", nil)
	h.push(t, udid)
	var er baseResult
	unmarshal(t, h.result(t, erase), &er)
	if er.Status != StatusAcknowledged {
		t.Errorf("EraseDevice: %+v", er)
	}
	select {
	case err := <-loopDone:
		if !errors.Is(err, ErrErased) {
			t.Errorf("push loop ended with %v, want ErrErased", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("push loop did not stop after the erase")
	}
	if n, err := dev.Poll(ctx); n != 0 || !errors.Is(err, ErrErased) {
		t.Errorf("Poll after erase: %d, %v", n, err)
	}
	if err := dev.Enroll(ctx); !errors.Is(err, ErrErased) {
		t.Errorf("Enroll after erase: %v", err)
	}
	h.cap.mu.Lock()
	_, answered := h.cap.results[after]
	h.cap.mu.Unlock()
	if answered {
		t.Error("an erased device answered a command queued after EraseDevice")
	}
	if st := dev.State(); !st.Erased || len(st.Profiles) != 0 || st.PasscodePresent || st.Locked {
		t.Errorf("state after erase: %+v", st)
	}
}

func TestTLSClientCertificateIdentity(t *testing.T) {
	h := newHarness(t, true)
	dev := h.newDevice(t, WithSignMessage(false))
	ctx := context.Background()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	if !dev.Enrolled() {
		t.Error("not enrolled after Enroll")
	}
	uuid := h.enqueue(t, dev.UDID(), "ProfileList", nil)
	n, err := dev.Poll(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Poll: %d, %v", n, err)
	}
	var pl profileListResult
	unmarshal(t, h.result(t, uuid), &pl)
	if pl.Status != StatusAcknowledged || pl.ProfileList == nil || len(pl.ProfileList) != 0 {
		t.Errorf("empty ProfileList: %+v", pl)
	}
	if n, err := dev.Poll(ctx); err != nil || n != 0 {
		t.Errorf("Poll of an empty queue: %d, %v", n, err)
	}
	if err := dev.Checkout(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.Enrolled() {
		t.Error("still enrolled after Checkout")
	}
}

func TestUntrustedIdentityRefused(t *testing.T) {
	h := newHarness(t, false)
	// The default identity is self-signed: the server's verifier refuses it.
	dev, err := New(h.server.URL+"/mdm", WithHTTPClient(h.server.Client()))
	if err != nil {
		t.Fatal(err)
	}
	err = dev.Enroll(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 400 {
		t.Fatalf("Enroll with an untrusted identity: %v", err)
	}
	if dev.Enrolled() {
		t.Error("enrolled despite the refusal")
	}
}

func TestNotNow(t *testing.T) {
	h := newHarness(t, false)
	dev := h.newDevice(t)
	ctx := context.Background()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	dev.SetNotNow(true)
	// DeviceInformation first: nanomdm v0.9.0's kv queue loses NotNow'd
	// commands when the last queued command is acknowledged after them
	// (its unlink leaves the previous item's next pointer), so this
	// order keeps the test about the device, not about that bug.
	di := h.enqueue(t, dev.UDID(), "DeviceInformation", map[string]any{"Queries": []string{"OSVersion"}})
	install := h.enqueue(t, dev.UDID(), "InstallProfile", map[string]any{"Payload": mobileconfig(t, "org.hale.x")})
	si := h.enqueue(t, dev.UDID(), "SecurityInfo", nil)
	n, err := dev.Poll(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Poll while busy: %d, %v", n, err)
	}
	for _, c := range []struct{ uuid, status string }{{install, StatusNotNow}, {si, StatusNotNow}, {di, StatusAcknowledged}} {
		var r baseResult
		unmarshal(t, h.result(t, c.uuid), &r)
		if r.Status != c.status || r.CommandUUID != c.uuid || len(r.ErrorChain) != 0 {
			t.Errorf("result %+v, want status %s", r, c.status)
		}
	}
	for _, c := range dev.Commands() {
		if want := map[string]string{"InstallProfile": StatusNotNow, "SecurityInfo": StatusNotNow, "DeviceInformation": StatusAcknowledged}[c.RequestType]; c.Status != want {
			t.Errorf("busy device answered %s with %s, want %s", c.RequestType, c.Status, want)
		}
	}
	if len(dev.State().Profiles) != 0 {
		t.Error("profile installed while busy")
	}

	// Once available, the server's retries succeed.
	dev.SetNotNow(false)
	busy := len(dev.Commands())
	n, err = dev.Poll(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Poll when available: %d, %v", n, err)
	}
	if _, ok := dev.State().Profile("org.hale.x"); !ok {
		t.Error("profile not installed on retry")
	}
	var statuses []string
	for _, c := range dev.Commands()[busy:] {
		statuses = append(statuses, c.RequestType+"="+c.Status)
	}
	if got, want := join(statuses), "InstallProfile=Acknowledged SecurityInfo=Acknowledged"; got != want {
		t.Errorf("history %s\nwant    %s", got, want)
	}
}

func TestErrorsAndLostMode(t *testing.T) {
	h := newHarness(t, false)
	st := IOSState()
	st.Supervised = false
	dev := h.newDevice(t, WithState(st))
	ctx := context.Background()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	udid := dev.UDID()
	remove := h.enqueue(t, udid, "RemoveProfile", map[string]any{"Identifier": "org.hale.absent"})
	unknown := h.enqueue(t, udid, "FrobnicateDevice", nil)
	lost := h.enqueue(t, udid, "EnableLostMode", map[string]any{"Message": "Return to clinic"})
	badInstall := h.enqueue(t, udid, "InstallProfile", map[string]any{"Payload": []byte("<plist><dict><key>PayloadType</key><string>Configuration</string></dict></plist>")})
	noPayload := h.enqueue(t, udid, "InstallProfile", nil)
	clear := h.enqueue(t, udid, "ClearPasscode", map[string]any{"UnlockToken": dev.UnlockToken()})
	if n, err := dev.Poll(ctx); err != nil || n != 6 {
		t.Fatalf("Poll: %d, %v", n, err)
	}
	for _, c := range []struct {
		uuid, status, domain string
		code                 int
	}{
		{remove, StatusError, ProfileErrorDomain, CodeProfileNotFound},
		{unknown, StatusError, MDMErrorDomain, CodeUnknownCommand},
		{lost, StatusError, MDMErrorDomain, CodeRequiresSupervised},
		{badInstall, StatusError, ProfileErrorDomain, CodeRequiredFieldMiss},
		{noPayload, StatusCommandFormatError, MDMErrorDomain, CodeMalformedCommand},
		{clear, StatusAcknowledged, "", 0},
	} {
		var r baseResult
		unmarshal(t, h.result(t, c.uuid), &r)
		if r.Status != c.status {
			t.Errorf("command %s: status %q, want %q", c.uuid, r.Status, c.status)
			continue
		}
		if c.status == StatusAcknowledged {
			continue
		}
		if len(r.ErrorChain) != 1 || r.ErrorChain[0].ErrorDomain != c.domain || r.ErrorChain[0].ErrorCode != c.code || r.ErrorChain[0].LocalizedDescription == "" {
			t.Errorf("command %s: error chain %+v, want %s %d", c.uuid, r.ErrorChain, c.domain, c.code)
		}
	}
	if dev.State().PasscodePresent {
		t.Error("passcode still present after ClearPasscode")
	}

	// Supervised, Lost Mode works and shows in DeviceInformation.
	dev.SetSupervised(true)
	lost = h.enqueue(t, udid, "EnableLostMode", map[string]any{"Message": "Return to clinic", "Footnote": "Hale"})
	di := h.enqueue(t, udid, "DeviceInformation", map[string]any{"Queries": []string{"IsMDMLostModeEnabled"}})
	lock := h.enqueue(t, udid, "DeviceLock", map[string]any{"Message": "x"})
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	var enabled baseResult
	unmarshal(t, h.result(t, lost), &enabled)
	if enabled.Status != StatusAcknowledged {
		t.Errorf("EnableLostMode on a supervised device: %+v", enabled)
	}
	var info deviceInfoResult
	unmarshal(t, h.result(t, di), &info)
	if info.QueryResponses["IsMDMLostModeEnabled"] != true {
		t.Errorf("IsMDMLostModeEnabled: %+v", info)
	}
	var lr deviceLockResult
	unmarshal(t, h.result(t, lock), &lr)
	if lr.MessageResult != "DeviceInLostMode" {
		t.Errorf("DeviceLock in Lost Mode: %+v", lr)
	}
	if s := dev.State(); !s.LostMode || s.LostModeMessage != "Return to clinic" || s.LostModeFootnote != "Hale" {
		t.Errorf("lost mode state: %+v", s)
	}
	h.enqueue(t, udid, "DisableLostMode", nil)
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.State().LostMode {
		t.Error("still in Lost Mode after DisableLostMode")
	}
}

func TestMacOS(t *testing.T) {
	h := newHarness(t, false)
	dev := h.newDevice(t, WithState(MacOSState()))
	ctx := context.Background()
	if err := dev.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	if dev.UnlockToken() != nil {
		t.Error("a Mac sent an UnlockToken")
	}
	dev.SetFileVaultEnabled(false)
	si := h.enqueue(t, dev.UDID(), "SecurityInfo", nil)
	lock := h.enqueue(t, dev.UDID(), "DeviceLock", map[string]any{"PIN": "123456"})
	badLock := h.enqueue(t, dev.UDID(), "DeviceLock", map[string]any{"PIN": "12"})
	lost := h.enqueue(t, dev.UDID(), "EnableLostMode", map[string]any{"Message": "x"})
	if _, err := dev.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	var r securityInfoResult
	unmarshal(t, h.result(t, si), &r)
	if s := r.SecurityInfo; s.FDE_Enabled || !s.SystemIntegrityProtectionEnabled || !s.FirewallSettings.FirewallEnabled {
		t.Errorf("macOS SecurityInfo: %+v", s)
	}
	// iOS-only keys are absent on macOS.
	var raw map[string]any
	unmarshal(t, h.result(t, si), &raw)
	if info, _ := raw["SecurityInfo"].(map[string]any); info == nil || info["PasscodePresent"] != nil || info["HardwareEncryptionCaps"] != nil {
		t.Errorf("macOS SecurityInfo carries iOS keys: %v", raw["SecurityInfo"])
	}
	for uuid, want := range map[string]string{lock: StatusAcknowledged, badLock: StatusCommandFormatError, lost: StatusError} {
		var b baseResult
		unmarshal(t, h.result(t, uuid), &b)
		if b.Status != want {
			t.Errorf("command %s: %q, want %q", uuid, b.Status, want)
		}
	}
	if s := dev.State(); !s.Locked || s.LockPIN != "123456" {
		t.Errorf("Mac lock state: locked=%v pin=%q", s.Locked, s.LockPIN)
	}
}
