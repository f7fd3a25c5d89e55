package applemdm

import (
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/policies"
)

func TestAppleOS(t *testing.T) {
	for name, want := range map[string]string{
		"iPhone15,2": "ios", "iPod9,1": "ios", "iPad13,1": "ipados", "MacBookPro18,3": "macos", "iMac21,1": "macos",
		"AppleTV11,1": "", "": "",
	} {
		if got := appleOS(name); got != want {
			t.Errorf("appleOS(%q) = %q, want %q", name, got, want)
		}
	}
}

// An iPhone's data protection is on only when the hardware encrypts and a passcode protects the
// keys; a Mac's disk encryption is FileVault. Every claim has provenance mdm and the result's time.
func TestApplyAppleResult(t *testing.T) {
	yes, no, caps := true, false, 3
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	var phone policies.Posture
	applyAppleResult(&phone, "ios", &commands.Result{RequestType: "SecurityInfo",
		SecurityInfo: &commands.SecurityInfo{HardwareEncryptionCaps: &caps, PasscodePresent: &no, PasscodeCompliant: &yes}}, at)
	if phone.Platform != "ios" || phone.DiskEncrypted == nil || phone.DiskEncrypted.Value ||
		phone.PasscodePresent == nil || phone.PasscodePresent.Value || phone.PasscodeCompliant == nil || !phone.PasscodeCompliant.Value {
		t.Fatalf("iPhone without a passcode: %+v", phone)
	}
	if phone.DiskEncrypted.Source != policies.ProvenanceMDM || !phone.DiskEncrypted.ObservedAt.Equal(at) {
		t.Errorf("claim %+v, want provenance mdm observed at %s", phone.DiskEncrypted, at)
	}

	var mac policies.Posture
	applyAppleResult(&mac, "macos", &commands.Result{RequestType: "ProfileList",
		SecurityInfo:      &commands.SecurityInfo{FDEEnabled: &yes, PasscodeCompliant: &no, PasscodeCompliantWithProfiles: &yes},
		DeviceInformation: &commands.DeviceInformation{OSVersion: "15.1", BuildVersion: "24B83", IsSupervised: &yes}}, at)
	if mac.DiskEncrypted == nil || !mac.DiskEncrypted.Value {
		t.Errorf("FileVault on: disk_encrypted %+v", mac.DiskEncrypted)
	}
	if mac.PasscodeCompliant == nil || !mac.PasscodeCompliant.Value {
		t.Errorf("compliant with profiles wins over compliant: %+v", mac.PasscodeCompliant)
	}
	if mac.OS == nil || mac.OS.Value.Version != "15.1" || mac.OS.Value.Build != "24B83" || mac.Supervised == nil || !mac.Supervised.Value {
		t.Errorf("DeviceInformation: os %+v supervised %+v", mac.OS, mac.Supervised)
	}
	if mac.InstalledProfiles == nil || len(mac.InstalledProfiles.Value) != 0 {
		t.Errorf("an empty ProfileList is an observation of no profiles: %+v", mac.InstalledProfiles)
	}
}
