package android

import (
	"slices"
	"strings"
	"time"

	"google.golang.org/api/androidmanagement/v1"

	"github.com/halemdm/hale/policies"
)

// maxNonCompliance bounds the settings recorded from one report.
const maxNonCompliance = 64

// postureUpdate maps a device resource (a STATUS_REPORT, or devices.list in the reconcile) to
// posture claims. A status report is the whole of what AMAPI knows, so every claim it can carry
// is replaced, and one the report lacks becomes unknown rather than keeping an older value.
//
//   - os: softwareInfo's androidVersion, androidBuildNumber and securityPatchLevel (mdm).
//   - disk_encrypted: deviceSettings.encryptionStatus ACTIVE or ACTIVE_PER_USER (mdm).
//     ACTIVE_DEFAULT_KEY is not: the key is not protected by the user's lock.
//   - passcode_present: deviceSettings.isDeviceSecure (mdm).
//   - passcode_compliant: a lock is set and no password setting is among the
//     nonComplianceDetails (mdm).
//   - noncompliance: every nonComplianceDetails settingName, and "policy" while the device has
//     not applied the policy it was given (mdm).
//   - jailbroken: securityPosture, Play Integrity's verdict: SECURE is false and
//     POTENTIALLY_COMPROMISED, or a COMPROMISED_OS or UNKNOWN_OS risk, is true, both attested.
//     AT_RISK with only HARDWARE_BACKED_EVALUATION_FAILED is false but mdm only: the phone is not
//     known to be rooted, yet nothing hardware-backed vouches for it. No posture is unknown.
//
// Claims are stamped with lastStatusReportTime, clamped to now (a report from the future does
// not stay fresh).
func postureUpdate(d *androidmanagement.Device, now time.Time) func(*policies.Posture) {
	at := now.UTC()
	if t, err := time.Parse(time.RFC3339Nano, d.LastStatusReportTime); err == nil && t.Before(at) {
		at = t.UTC()
	}
	mdm := policies.ProvenanceMDM
	return func(p *policies.Posture) {
		p.Platform = policies.PlatformAndroid
		p.OS, p.DiskEncrypted, p.PasscodePresent, p.PasscodeCompliant, p.NonCompliance, p.Jailbroken = nil, nil, nil, nil, nil, nil
		if si := d.SoftwareInfo; si != nil && si.AndroidVersion != "" {
			p.OS = policies.Observe(policies.OSInfo{Version: clip(si.AndroidVersion), Build: clip(si.AndroidBuildNumber),
				SecurityPatch: clip(si.SecurityPatchLevel)}, mdm, at)
		}
		var settings []string
		passwordOK := true
		for _, nc := range d.NonComplianceDetails {
			if nc == nil {
				continue
			}
			name := nc.SettingName
			if name == "" {
				name = "unnamed setting"
			}
			if strings.HasPrefix(name, "password") {
				passwordOK = false
			}
			if len(settings) < maxNonCompliance && !slices.Contains(settings, name) {
				settings = append(settings, clip(name))
			}
		}
		if d.AppliedPolicyName != "" && d.PolicyName != "" && d.AppliedPolicyName != d.PolicyName {
			settings = append(settings, "policy")
		}
		slices.Sort(settings)
		if settings == nil {
			settings = []string{}
		}
		p.NonCompliance = policies.Observe(settings, mdm, at)
		if ds := d.DeviceSettings; ds != nil {
			switch ds.EncryptionStatus {
			case "ACTIVE", "ACTIVE_PER_USER":
				p.DiskEncrypted = policies.Observe(true, mdm, at)
			case "INACTIVE", "ACTIVATING", "UNSUPPORTED", "ACTIVE_DEFAULT_KEY":
				p.DiskEncrypted = policies.Observe(false, mdm, at)
			}
			p.PasscodePresent = policies.Observe(ds.IsDeviceSecure, mdm, at)
			p.PasscodeCompliant = policies.Observe(ds.IsDeviceSecure && passwordOK, mdm, at)
		}
		p.Jailbroken = integrity(d.SecurityPosture, at)
	}
}

// integrity maps securityPosture to the jailbroken claim; see postureUpdate.
func integrity(sp *androidmanagement.SecurityPosture, at time.Time) *policies.Claim[bool] {
	if sp == nil {
		return nil
	}
	risks := map[string]bool{}
	for _, pd := range sp.PostureDetails {
		if pd != nil {
			risks[pd.SecurityRisk] = true
		}
	}
	switch {
	case sp.DevicePosture == "POTENTIALLY_COMPROMISED" || risks["COMPROMISED_OS"] || risks["UNKNOWN_OS"]:
		return policies.Observe(true, policies.ProvenanceAttested, at)
	case sp.DevicePosture == "SECURE":
		return policies.Observe(false, policies.ProvenanceAttested, at)
	case sp.DevicePosture == "AT_RISK":
		return policies.Observe(false, policies.ProvenanceMDM, at)
	}
	return nil
}
