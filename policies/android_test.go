package policies

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/amapischema"
)

// Every rendered policy, for both kinds of phone, is an AMAPI Policy by the discovery document
// in the google.golang.org/api module: a misspelled field or enum value fails here.
func TestRenderAndroidMatchesDiscovery(t *testing.T) {
	doc, err := amapischema.Load()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../examples/policies/*.yaml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, wp := range []bool{false, true} {
			out := RenderAndroid(p, AndroidOptions{WorkProfile: wp})
			if errs := doc.CheckValue("Policy", out); len(errs) > 0 {
				t.Errorf("%s (work profile %v): %v", f, wp, errs)
			}
		}
	}
	// A misspelling is caught: the check is not vacuous.
	if errs := doc.CheckValue("Policy", map[string]any{"screenCaptureDisable": true}); len(errs) != 1 {
		t.Errorf("misspelled field: %v", errs)
	}
	if errs := doc.CheckValue("Policy", map[string]any{"encryptionPolicy": "ENABLED"}); len(errs) != 1 {
		t.Errorf("bad enum: %v", errs)
	}
}

func TestRenderAndroidFields(t *testing.T) {
	p := mustParse(t, `
passcode: {required: true, min_length: 6, require_alphanumeric: true, max_inactivity_minutes: 5, max_failed_attempts: 10, max_age_days: 90, history: 5}
encryption: {required: true}
screenshots: {allowed: false}
backup: {cloud_backup_allowed: false, cloud_document_sync_allowed: false}
notifications: {lock_screen_view_allowed: false}
os: {android: "14", android_security_patch: "2026-01-01"}
integrity: {block_jailbroken: true}
`)
	got := roundTrip(t, RenderAndroid(p, AndroidOptions{}))
	want := roundTrip(t, map[string]any{
		"statusReportingSettings": map[string]any{"softwareInfoEnabled": true, "deviceSettingsEnabled": true},
		"maximumTimeToLock":       "300000",
		"passwordPolicies": []any{map[string]any{
			"passwordScope": "SCOPE_DEVICE", "passwordQuality": "ALPHANUMERIC", "passwordMinimumLength": 6,
			"maximumFailedPasswordsForWipe": 10, "passwordExpirationTimeout": "7776000s", "passwordHistoryLength": 5,
		}},
		"encryptionPolicy":         "ENABLED_WITH_PASSWORD",
		"screenCaptureDisabled":    true,
		"backupService":            "BACKUP_SERVICE_DISABLED",
		"keyguardDisabledFeatures": []any{"NOTIFICATIONS"},
		"minimumApiLevel":          34,
		"systemUpdate":             map[string]any{"type": "AUTOMATIC"},
		"advancedSecurityOverrides": map[string]any{"googlePlayProtectVerifyApps": "VERIFY_APPS_ENFORCED",
			"developerSettings": "DEVELOPER_SETTINGS_DISABLED", "untrustedAppsPolicy": "DISALLOW_INSTALL"},
	})
	if got != want {
		t.Errorf("company phone:\n got %s\nwant %s", got, want)
	}

	wp := RenderAndroid(p, AndroidOptions{WorkProfile: true})
	pw := wp["passwordPolicies"].([]any)
	if len(pw) != 2 || pw[0].(map[string]any)["passwordScope"] != "SCOPE_PROFILE" ||
		pw[1].(map[string]any)["passwordScope"] != "SCOPE_DEVICE" || pw[1].(map[string]any)["passwordQuality"] != "COMPLEXITY_HIGH" {
		t.Errorf("work profile passwordPolicies = %v", pw)
	}
	if len(pw[1].(map[string]any)) != 2 {
		t.Errorf("the device lock of a personal phone gets a complexity only: %v", pw[1])
	}
	if cp := wp["crossProfilePolicies"].(map[string]any); cp["crossProfileDataSharing"] != "DATA_SHARING_FROM_WORK_TO_PERSONAL_DISALLOWED" {
		t.Errorf("crossProfilePolicies = %v", cp)
	}
	if _, ok := wp["systemUpdate"]; ok {
		t.Error("a personal phone's system updates are its owner's")
	}
}

func TestAndroidAPILevel(t *testing.T) {
	for v, want := range map[string]int{"6": 23, "8.1": 27, "12": 31, "12.1": 32, "13": 33, "14": 34, "16": 36, "15.0.1": 35} {
		if got, ok := AndroidAPILevel(v); !ok || got != want {
			t.Errorf("AndroidAPILevel(%s) = %d, %v; want %d", v, got, ok, want)
		}
	}
	for _, v := range []string{"5", "4.4", "x", "", "100"} {
		if _, ok := AndroidAPILevel(v); ok {
			t.Errorf("AndroidAPILevel(%q) accepted", v)
		}
	}
}

func TestEvaluateAndroid(t *testing.T) {
	p := mustParse(t, `
passcode: {required: true, min_length: 6}
encryption: {required: true}
screenshots: {allowed: false}
os: {android: "14", android_security_patch: "2026-01-01"}
integrity: {block_jailbroken: true, jailbreak_evidence: required}
`)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute)
	base := func() *Posture {
		return &Posture{Platform: PlatformAndroid, ReportedAt: at,
			OS:                Observe(OSInfo{Version: "15", SecurityPatch: "2026-02-05"}, ProvenanceMDM, at),
			DiskEncrypted:     Observe(true, ProvenanceMDM, at),
			PasscodePresent:   Observe(true, ProvenanceMDM, at),
			PasscodeCompliant: Observe(true, ProvenanceMDM, at),
			NonCompliance:     Observe([]string{}, ProvenanceMDM, at),
			Jailbroken:        Observe(false, ProvenanceAttested, at),
		}
	}
	if v := Evaluate(p, base(), nil, now); !v.Compliant {
		t.Fatalf("compliant phone: %v", v.Reasons)
	}
	cases := []struct {
		name   string
		mutate func(*Posture)
		want   string
	}{
		{"setting not applied", func(p *Posture) { p.NonCompliance.Value = []string{"screenCaptureDisabled"} }, CodePolicyNotInstalled},
		{"noncompliance unknown", func(p *Posture) { p.NonCompliance = nil }, CodeClaimUnknown},
		{"old patch", func(p *Posture) { p.OS.Value.SecurityPatch = "2025-11-01" }, CodePatchTooOld},
		{"no patch", func(p *Posture) { p.OS.Value.SecurityPatch = "" }, CodeOSUnknown},
		{"old android", func(p *Posture) { p.OS.Value.Version = "13" }, CodeOSTooOld},
		{"rooted", func(p *Posture) { p.Jailbroken.Value = true }, CodeJailbroken},
		{"integrity unknown", func(p *Posture) { p.Jailbroken = nil }, CodeClaimUnknown},
		{"not encrypted", func(p *Posture) { p.DiskEncrypted.Value = false }, CodeEncryptionOff},
		{"no lock", func(p *Posture) { p.PasscodePresent.Value = false }, CodePasscodeMissing},
	}
	for _, c := range cases {
		pos := base()
		c.mutate(pos)
		v := Evaluate(p, pos, nil, now)
		if v.Compliant || !slices.ContainsFunc(v.Reasons, func(r Reason) bool { return r.Code == c.want }) {
			t.Errorf("%s: %v, want %s", c.name, v.Reasons, c.want)
		}
	}
	// Every rule of this policy is observable on Android.
	for _, u := range CheckObservable(p, nil) {
		if u.Enrollment == EnrollmentAndroid {
			t.Errorf("unobservable on android: %+v", u)
		}
	}
}

func roundTrip(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back any
	_ = json.Unmarshal(b, &back)
	b, _ = json.Marshal(back)
	return string(b)
}

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
