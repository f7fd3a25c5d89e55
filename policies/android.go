package policies

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// AndroidOptions says which kind of Android device a rendered policy is for.
type AndroidOptions struct {
	// WorkProfile renders for a personally owned phone with a work profile (BYOD): the
	// passcode rules apply to the work profile's own lock, and the device lock gets only a
	// complexity floor, the one thing Android lets an organisation ask of a personal phone's
	// lock. Otherwise the policy is for a company-owned, fully managed phone.
	WorkProfile bool
}

// androidAPILevels maps the Android releases before 13 to their API levels; from Android 13 on
// the API level is the major version plus 20 (13 is 33, 16 is 36).
var androidAPILevels = map[string]int{
	"6": 23, "6.0": 23, "7": 24, "7.0": 24, "7.1": 25, "8": 26, "8.0": 26, "8.1": 27,
	"9": 28, "10": 29, "11": 30, "12": 31, "12.1": 32,
}

// AndroidAPILevel returns the API level of an Android release ("14" is 34), for the
// minimumApiLevel AMAPI enforces; ok is false for a version that is no Android release the
// Android Management API manages.
func AndroidAPILevel(version string) (int, bool) {
	if l, ok := androidAPILevels[version]; ok {
		return l, true
	}
	major, _, _ := strings.Cut(version, ".")
	n, err := strconv.Atoi(major)
	if err != nil || n < 13 || n > 99 {
		return 0, false
	}
	return n + 20, true
}

// validPatchLevel reports whether s is an ISO date, the form of Android's security patch level.
func validPatchLevel(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil && len(s) == len(time.DateOnly)
}

// patchLevel decodes an Android security patch level.
func (d *decoder) patchLevel(field string, n *yaml.Node, dst *string) {
	var s string
	if !d.str(field, n, 10, &s) {
		return
	}
	if !validPatchLevel(s) {
		d.fail(field, n, "must be a security patch level, an ISO date such as \"2026-01-01\" (got %q)", clip(s))
		return
	}
	*dst = s
}

// androidSettings lists the policy fields whose settings RenderAndroid puts in the AMAPI policy,
// so that the device's nonComplianceDetails are the evidence each is in force.
func androidSettings(p *Policy) []string {
	var out []string
	if pc := p.Passcode; pc != nil && (pc.needsPasscode() || pc.MaxFailedAttempts > 0 || pc.History > 0) {
		out = append(out, pc.firstSet("required", "min_length", "require_alphanumeric", "min_complex_chars",
			"max_age_days", "max_inactivity_minutes", "max_failed_attempts", "history"))
	}
	if p.Encryption != nil && p.Encryption.Required {
		out = append(out, "encryption.required")
	}
	if s := p.Screenshots; s != nil && s.Allowed != nil && !*s.Allowed {
		out = append(out, "screenshots.allowed")
	}
	if b := p.Backup; b != nil {
		if b.CloudBackupAllowed != nil && !*b.CloudBackupAllowed {
			out = append(out, "backup.cloud_backup_allowed")
		}
		if b.CloudDocumentSyncAllowed != nil && !*b.CloudDocumentSyncAllowed {
			out = append(out, "backup.cloud_document_sync_allowed")
		}
	}
	if n := p.Notifications; n != nil {
		if n.LockScreenViewAllowed != nil && !*n.LockScreenViewAllowed {
			out = append(out, "notifications.lock_screen_view_allowed")
		} else if len(n.Apps) > 0 {
			out = append(out, "notifications.apps")
		}
	}
	if p.OS != nil && p.OS.Android != "" {
		out = append(out, "os.android")
	}
	return out
}

// androidNeeds: every setting the AMAPI policy carries is verified through the device's
// report of which settings are not in force.
func androidNeeds(p *Policy) []need {
	var out []need
	for _, f := range androidSettings(p) {
		out = append(out, need{f, []string{claimNoncompliance}})
	}
	return out
}

// android: the device must report that every setting of its AMAPI policy is in force (its
// nonComplianceDetails are empty); each one that is not is a policy_not_installed reason naming
// the AMAPI setting.
func (e *evaluation) android() {
	if len(androidSettings(e.p)) == 0 {
		return
	}
	settings, ok := fresh(e, e.pos.NonCompliance, claimNoncompliance)
	if !ok {
		return
	}
	for _, s := range settings {
		e.add(CodePolicyNotInstalled, "android setting not in force: "+clip(s))
	}
}

// RenderAndroid renders p as an Android Management API Policy resource, as the JSON object
// enterprises.policies.patch takes (field names and enum values from the API's discovery
// document; the tests check every one against it). The name, version and applications are the
// server's to set.
//
// Only what p manages is set, except statusReportingSettings, which always asks for what
// posture needs: software (OS version, patch level) and device settings (encryption, whether a
// lock is set). Hale does not ask for application, network, memory or location reports: a
// personal phone's owner is not Hale's business.
func RenderAndroid(p *Policy, opts AndroidOptions) map[string]any {
	out := map[string]any{
		"statusReportingSettings": map[string]any{
			"softwareInfoEnabled":   true,
			"deviceSettingsEnabled": true,
		},
	}
	if pc := p.Passcode; pc != nil {
		renderAndroidPasscode(out, pc, opts)
	}
	if p.Encryption != nil && p.Encryption.Required {
		// With a passcode required, the passcode also protects the key at boot.
		mode := "ENABLED_WITHOUT_PASSWORD"
		if p.Passcode != nil && p.Passcode.needsPasscode() {
			mode = "ENABLED_WITH_PASSWORD"
		}
		out["encryptionPolicy"] = mode
	}
	if s := p.Screenshots; s != nil && s.Allowed != nil {
		// In a work profile this covers the work apps only; the personal side stays the owner's.
		out["screenCaptureDisabled"] = !*s.Allowed
	}
	if b := p.Backup; b != nil {
		if b.CloudBackupAllowed != nil {
			out["backupService"] = map[bool]string{true: "BACKUP_SERVICE_USER_CHOICE", false: "BACKUP_SERVICE_DISABLED"}[*b.CloudBackupAllowed]
		}
		if b.CloudDocumentSyncAllowed != nil && !*b.CloudDocumentSyncAllowed && opts.WorkProfile {
			// Work documents must not leave the work profile by sharing or the clipboard.
			crossProfile(out)["crossProfileDataSharing"] = "DATA_SHARING_FROM_WORK_TO_PERSONAL_DISALLOWED"
			crossProfile(out)["crossProfileCopyPaste"] = "COPY_FROM_WORK_TO_PERSONAL_DISALLOWED"
		}
	}
	renderAndroidDataSharing(out, p.DataSharing, opts)
	if n := p.Notifications; n != nil {
		var features []string
		if n.LockScreenViewAllowed != nil && !*n.LockScreenViewAllowed {
			features = append(features, "NOTIFICATIONS")
		} else if slices.ContainsFunc(n.Apps, func(a AppNotification) bool { return a.Previews != PreviewAlways }) {
			// Android has no per-app preview setting: one app that must not preview hides the
			// content of every notification on the lock screen.
			features = append(features, "UNREDACTED_NOTIFICATIONS")
		}
		if features != nil {
			out["keyguardDisabledFeatures"] = features
		}
	}
	if o := p.OS; o != nil {
		if level, ok := AndroidAPILevel(o.Android); ok && o.Android != "" {
			out["minimumApiLevel"] = level
		}
		if o.AndroidSecurityPatch != "" && !opts.WorkProfile {
			out["systemUpdate"] = map[string]any{"type": "AUTOMATIC"}
		}
	}
	if ip := p.Integrity; ip != nil && ip.BlockJailbroken {
		out["advancedSecurityOverrides"] = map[string]any{
			"googlePlayProtectVerifyApps": "VERIFY_APPS_ENFORCED",
			"developerSettings":           "DEVELOPER_SETTINGS_DISABLED",
			"untrustedAppsPolicy":         "DISALLOW_INSTALL",
		}
	}
	return out
}

// renderAndroidPasscode sets passwordPolicies and maximumTimeToLock. A fully managed phone gets
// the rules on its device lock; a work profile gets them on the work lock, with the device lock
// held to the nearest Android complexity level (COMPLEXITY_LOW, _MEDIUM, _HIGH), the only
// device-scope requirement a personal phone takes.
func renderAndroidPasscode(out map[string]any, pc *PasscodePolicy, opts AndroidOptions) {
	if pc.MaxInactivityMinutes > 0 {
		out["maximumTimeToLock"] = strconv.FormatInt(int64(pc.MaxInactivityMinutes)*60_000, 10)
	}
	if !pc.needsPasscode() && pc.MaxFailedAttempts == 0 && pc.History == 0 {
		return
	}
	req := map[string]any{"passwordQuality": "SOMETHING"}
	switch {
	case pc.MinComplexChars > 0:
		req["passwordQuality"] = "COMPLEX"
		req["passwordMinimumSymbols"] = pc.MinComplexChars
		req["passwordMinimumLetters"] = 1
		req["passwordMinimumNumeric"] = 1
	case pc.RequireAlphanumeric:
		req["passwordQuality"] = "ALPHANUMERIC"
	case pc.MinLength > 0:
		req["passwordQuality"] = "NUMERIC"
	}
	if pc.MinLength > 0 {
		req["passwordMinimumLength"] = pc.MinLength
	}
	if pc.MaxFailedAttempts > 0 {
		req["maximumFailedPasswordsForWipe"] = pc.MaxFailedAttempts
	}
	if pc.MaxAgeDays > 0 {
		req["passwordExpirationTimeout"] = strconv.Itoa(pc.MaxAgeDays*86400) + "s"
	}
	if pc.History > 0 {
		req["passwordHistoryLength"] = pc.History
	}
	if !opts.WorkProfile {
		req["passwordScope"] = "SCOPE_DEVICE"
		out["passwordPolicies"] = []any{req}
		return
	}
	req["passwordScope"] = "SCOPE_PROFILE"
	device := map[string]any{"passwordScope": "SCOPE_DEVICE", "passwordQuality": androidComplexity(pc)}
	out["passwordPolicies"] = []any{req, device}
}

// androidComplexity is the Android complexity level nearest to, and not above, what pc asks:
// HIGH is a PIN of 8 or an alphanumeric password of 6, MEDIUM a PIN or password of 4.
func androidComplexity(pc *PasscodePolicy) string {
	alpha := pc.RequireAlphanumeric || pc.MinComplexChars > 0
	switch {
	case pc.MinLength >= 8 || alpha && pc.MinLength >= 6:
		return "COMPLEXITY_HIGH"
	case pc.MinLength >= 4 || alpha:
		return "COMPLEXITY_MEDIUM"
	default:
		return "COMPLEXITY_LOW"
	}
}

// crossProfile returns the policy's crossProfilePolicies, made on first use.
func crossProfile(out map[string]any) map[string]any {
	cp, ok := out["crossProfilePolicies"].(map[string]any)
	if !ok {
		cp = map[string]any{}
		out["crossProfilePolicies"] = cp
	}
	return cp
}

// renderAndroidDataSharing renders data_sharing. In a work profile the managed boundary is the
// profile's: nothing opens or pastes from work apps into personal ones. On a company phone every
// app is installed by the policy (AMAPI's default Play Store mode lists only the policy's apps),
// so there is no unmanaged side to keep out. Third-party keyboards: only the system's input
// methods (an empty permittedInputMethods). AMAPI has no AirDrop or dictation control
// (androidEnforced).
func renderAndroidDataSharing(out map[string]any, ds *DataSharingPolicy, opts AndroidOptions) {
	if ds == nil {
		return
	}
	if opts.WorkProfile {
		if ds.ManagedOpenIn != nil && *ds.ManagedOpenIn {
			crossProfile(out)["crossProfileDataSharing"] = "DATA_SHARING_FROM_WORK_TO_PERSONAL_DISALLOWED"
		}
		if ds.ManagedPasteboard != nil && *ds.ManagedPasteboard {
			crossProfile(out)["crossProfileCopyPaste"] = "COPY_FROM_WORK_TO_PERSONAL_DISALLOWED"
		}
	}
	if ds.ThirdPartyKeyboards == KeyboardsBlocked {
		out["permittedInputMethods"] = map[string]any{"packageNames": []any{}}
	}
}
