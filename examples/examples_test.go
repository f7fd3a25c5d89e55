// Package examples_test keeps the example configuration honest: the policies parse, validate and
// evaluate as their comments say, and the server configuration file loads the way mdmserver
// loads it and names every option, so neither can drift from the code.
package examples_test

import (
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/halemdm/hale/mdmserver"
	"github.com/halemdm/hale/policies"
)

var (
	now = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	all = []policies.Platform{policies.PlatformIOS, policies.PlatformIPadOS, policies.PlatformMacOS,
		policies.PlatformWindows, policies.PlatformLinux}
	mobile = []policies.Platform{policies.PlatformIOS, policies.PlatformIPadOS}
)

const messagingApp = "com.example.securetext"

// loadPolicy parses examples/policies/file as the server would store it under name.
func loadPolicy(t *testing.T, file, name string) *policies.Policy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("policies", file))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	p.Name, p.Version = name, 1
	return p
}

// compliantPosture is a fresh posture of pl that meets every example policy: current OS
// releases, encrypted, passcode set and compliant (desktops: password rules that enforce it),
// screen locking after two minutes, intact, supervised (Apple mobile), with the policy's
// profiles installed and its restrictions in force (Apple). It has facts some sources do not
// report; reportable keeps only those a source reports. No jailbreak report: nothing reports
// one on iOS and iPadOS.
func compliantPosture(p *policies.Policy, pl policies.Platform) *policies.Posture {
	at := now.Add(-time.Minute)
	src := policies.ProvenanceAgent
	if slices.Contains(mobile, pl) {
		src = policies.ProvenanceMDM
	}
	pos := &policies.Posture{Platform: pl, ReportedAt: at}
	switch pl {
	case policies.PlatformIOS, policies.PlatformIPadOS:
		pos.OS = policies.Observe(policies.OSInfo{Version: "18.1", Build: "22B83"}, src, at)
		pos.Supervised = policies.Observe(true, policies.ProvenanceMDM, at)
	case policies.PlatformMacOS:
		pos.OS = policies.Observe(policies.OSInfo{Version: "15.1", Build: "24B83"}, src, at)
		pos.SIPEnabled = policies.Observe(true, policies.ProvenanceMDM, at)
	case policies.PlatformWindows:
		pos.OS = policies.Observe(policies.OSInfo{Version: "10.0.26100", Build: "26100.2314"}, src, at)
	case policies.PlatformLinux:
		pos.OS = policies.Observe(policies.OSInfo{Version: "24.04", Distribution: "ubuntu"}, src, at)
		pos.SwapEncrypted = policies.Observe(true, src, at)
	}
	pos.DiskEncrypted = policies.Observe(true, src, at)
	pos.PasscodePresent = policies.Observe(true, src, at)
	// The jailbreak claim: the agent's on computers, the messaging app's on phones and
	// tablets, whose registration App Attest vouched for.
	if slices.Contains(mobile, pl) {
		pos.Jailbroken = policies.Observe(false, policies.ProvenanceApp, at)
		pos.AppAttested = policies.Observe(true, policies.ProvenanceAttested, at)
	} else {
		pos.Jailbroken = policies.Observe(false, src, at)
	}
	pos.PasscodeCompliant = policies.Observe(true, src, at)
	if pl == policies.PlatformMacOS || pl == policies.PlatformWindows || pl == policies.PlatformLinux {
		pos.ScreenLockEnabled = policies.Observe(true, src, at)
		pos.ScreenLockTimeout = policies.Observe(policies.Duration(2*time.Minute), src, at)
		pos.SecureBoot = policies.Observe(true, src, at)
		pos.AgentTampered = policies.Observe(false, src, at)
		pos.PasswordRules = policies.Observe(policies.PasswordRules{Enforced: true, MinLength: 12, MinClasses: 4,
			MinDigits: 1, MinLetters: 1, MinOther: 1}, src, at)
	}
	if pl != policies.PlatformWindows && pl != policies.PlatformLinux {
		var installed []policies.InstalledProfile
		for _, kind := range []string{policies.ProfilePasscode, policies.ProfileRestrictions,
			policies.ProfileFileVault, policies.ProfileNotifications} {
			installed = append(installed, policies.InstalledProfile{Identifier: policies.ProfileIdentifier(p.Name, kind)})
		}
		pos.InstalledProfiles = policies.Observe(installed, policies.ProvenanceMDM, at)
		// The Restrictions command's answer: every restriction the examples set, in force.
		pos.Restrictions = policies.Observe(map[string]bool{
			"allowScreenShot": false, "allowRemoteScreenObservation": false, "allowCloudBackup": false,
			"allowCloudDocumentSync": false, "allowCloudDesktopAndDocuments": false,
			"forceEncryptedBackup": true, "allowLockScreenNotificationsView": false,
			// data_sharing
			"allowOpenFromManagedToUnmanaged": false, "allowOpenFromUnmanagedToManaged": false,
			"requireManagedPasteboard": true, "forceAirDropUnmanaged": true, "allowAirDrop": false,
			"forceOnDeviceOnlyDictation": true,
		}, policies.ProvenanceMDM, at)
	}
	return pos
}

func codes(v policies.Verdict) []string {
	out := []string{}
	for _, r := range v.Reasons {
		out = append(out, r.Code)
	}
	slices.Sort(out)
	return out
}

// evalCase is a change to a compliant posture and the verdict it must give.
type evalCase struct {
	name      string
	platforms []policies.Platform
	mutate    func(pos *policies.Posture)
	want      []string      // reason codes, with repeats, any order; empty: compliant
	allowFor  time.Duration // how long the device stays allowed: 0 denies at once
}

type policyExample struct {
	file, name string
	targets    []policies.Platform // platforms the policy is written for: compliant there
	check      func(t *testing.T, p *policies.Policy)
	cases      []evalCase
}

func examplesList() []policyExample {
	hipaaGrace := 24 * time.Hour
	setReportAge := func(d time.Duration) func(*policies.Posture) {
		return func(pos *policies.Posture) { ageClaims(pos, now.Add(-d)) }
	}
	return []policyExample{{
		file: "hipaa-texting.yaml", name: "hipaa", targets: all, check: checkHIPAA,
		cases: []evalCase{
			{name: "encryption off is denied at once", platforms: all,
				mutate: func(pos *policies.Posture) { pos.DiskEncrypted.Value = false },
				want:   []string{policies.CodeEncryptionOff}},
			{name: "jailbroken", platforms: mobile,
				mutate: reportJailbroken, want: []string{policies.CodeJailbroken}},
			{name: "old OS gets a day's grace", platforms: all,
				mutate: func(pos *policies.Posture) { pos.OS.Value.Version = "10.0"; pos.OS.Value.Build = "" },
				want:   []string{policies.CodeOSTooOld}, allowFor: hipaaGrace},
			{name: "unlisted Linux distribution", platforms: []policies.Platform{policies.PlatformLinux},
				mutate: func(pos *policies.Posture) { pos.OS.Value.Distribution = "fedora" },
				want:   []string{policies.CodeOSUnsupported}, allowFor: hipaaGrace},
			{name: "screenshots found allowed", platforms: []policies.Platform{policies.PlatformIOS, policies.PlatformMacOS},
				mutate: func(pos *policies.Posture) { pos.Restrictions.Value["allowScreenShot"] = true },
				want:   []string{policies.CodeScreenshotsAllowed}, allowFor: hipaaGrace},
			{name: "cloud backup found allowed", platforms: mobile,
				mutate: func(pos *policies.Posture) { pos.Restrictions.Value["allowCloudBackup"] = true },
				want:   []string{policies.CodeCloudBackupAllowed}, allowFor: hipaaGrace},
			{name: "unsupervised phone cannot take app notification settings", platforms: mobile,
				mutate: func(pos *policies.Posture) { pos.Supervised.Value = false },
				// allowCloudDocumentSync, allowAirDrop (data_sharing.airdrop: blocked) and the
				// notification settings need supervision.
				want:     []string{policies.CodeUnsupervisedSetting, policies.CodeUnsupervisedSetting, policies.CodeUnsupervisedSetting},
				allowFor: hipaaGrace},
			{name: "report 14 minutes old is fresh", platforms: all, mutate: setReportAge(14 * time.Minute)},
			{name: "report 16 minutes old is stale", platforms: all, mutate: setReportAge(16 * time.Minute),
				want: []string{policies.CodeReportStale}, allowFor: hipaaGrace},
			{name: "tampered agent", platforms: []policies.Platform{policies.PlatformMacOS, policies.PlatformWindows, policies.PlatformLinux},
				mutate: func(pos *policies.Posture) { pos.AgentTampered.Value = true },
				want:   []string{policies.CodeAgentTampered}},
		},
	}, {
		file: "byod.yaml", name: "byod", targets: all, check: checkBYOD,
		cases: []evalCase{
			{name: "unsupervised phone is fine", platforms: mobile,
				mutate: func(pos *policies.Posture) { pos.Supervised = nil }},
			{name: "screenshots and backup are the owner's business", platforms: mobile,
				mutate: func(pos *policies.Posture) {
					pos.Supervised.Value = false
					// The passcode profile, and restrictions that keep only the managed boundary
					// (data_sharing): screenshots and backup stay allowed.
					pos.InstalledProfiles.Value = pos.InstalledProfiles.Value[:2]
					pos.Restrictions.Value = map[string]bool{"allowScreenShot": true, "allowCloudBackup": true,
						"allowOpenFromManagedToUnmanaged": false, "allowOpenFromUnmanagedToManaged": false,
						"requireManagedPasteboard": true, "forceAirDropUnmanaged": true, "forceOnDeviceOnlyDictation": true}
				}},
			{name: "report 50 minutes old is fresh", platforms: all, mutate: setReportAge(50 * time.Minute)},
			{name: "encryption off gets three days", platforms: all,
				mutate: func(pos *policies.Posture) { pos.DiskEncrypted.Value = false },
				want:   []string{policies.CodeEncryptionOff}, allowFor: 72 * time.Hour},
			{name: "no passcode", platforms: all,
				mutate: func(pos *policies.Posture) { pos.PasscodePresent.Value = false },
				want:   []string{policies.CodePasscodeMissing}, allowFor: 72 * time.Hour},
			{name: "OS older than the BYOD minimum", platforms: all[:4],
				mutate: func(pos *policies.Posture) { pos.OS.Value.Version = "10.0"; pos.OS.Value.Build = "" },
				want:   []string{policies.CodeOSTooOld}, allowFor: 72 * time.Hour},
			{name: "Linux releases are the owner's business", platforms: []policies.Platform{policies.PlatformLinux},
				mutate: func(pos *policies.Posture) { pos.OS.Value = policies.OSInfo{Version: "9", Distribution: "fedora"} }},
			{name: "jailbroken is denied at once", platforms: mobile,
				mutate: reportJailbroken, want: []string{policies.CodeJailbroken}},
		},
	}, {
		file: "kiosk.yaml", name: "ward-tablet", targets: []policies.Platform{policies.PlatformIPadOS}, check: checkKiosk,
		cases: []evalCase{
			{name: "passcode below policy is denied at once", platforms: []policies.Platform{policies.PlatformIPadOS},
				mutate: func(pos *policies.Posture) { pos.PasscodeCompliant.Value = false },
				want:   []string{policies.CodePasscodeNoncompliant}},
			{name: "unsupervised tablet", platforms: []policies.Platform{policies.PlatformIPadOS},
				mutate: func(pos *policies.Posture) { pos.Supervised.Value = false },
				want:   []string{policies.CodeUnsupervisedSetting, policies.CodeUnsupervisedSetting}},
			{name: "screenshots found allowed", platforms: []policies.Platform{policies.PlatformIPadOS},
				mutate: func(pos *policies.Posture) { pos.Restrictions.Value["allowScreenShot"] = true },
				want:   []string{policies.CodeScreenshotsAllowed}},
			{name: "notification profile missing", platforms: []policies.Platform{policies.PlatformIPadOS},
				mutate: func(pos *policies.Posture) { pos.InstalledProfiles.Value = pos.InstalledProfiles.Value[:3] },
				want:   []string{policies.CodePolicyNotInstalled}},
			{name: "iPadOS 17.4", platforms: []policies.Platform{policies.PlatformIPadOS},
				mutate: func(pos *policies.Posture) { pos.OS.Value.Version = "17.4" },
				want:   []string{policies.CodeOSTooOld}},
			{name: "report 16 minutes old is stale", platforms: []policies.Platform{policies.PlatformIPadOS},
				mutate: setReportAge(16 * time.Minute), want: []string{policies.CodeReportStale}},
		},
	}}
}

// reportJailbroken is a source reporting the device jailbroken (on iOS, a future one: the
// messaging app's attestation).
func reportJailbroken(pos *policies.Posture) {
	pos.Jailbroken = policies.Observe(true, policies.ProvenanceAttested, pos.ReportedAt)
}

// ageClaims moves the report and every claim in it to at.
func ageClaims(pos *policies.Posture, at time.Time) {
	pos.ReportedAt = at
	v := reflect.ValueOf(pos).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer && !f.IsNil() {
			if obs := f.Elem().FieldByName("ObservedAt"); obs.IsValid() {
				obs.Set(reflect.ValueOf(at))
			}
		}
	}
}

func TestEveryExamplePolicyIsTested(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("policies", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tested []string
	for _, ex := range examplesList() {
		tested = append(tested, filepath.Join("policies", ex.file))
	}
	slices.Sort(files)
	slices.Sort(tested)
	if !slices.Equal(files, tested) {
		t.Fatalf("example policies %v, tested %v: add every new example to examplesList", files, tested)
	}
}

func TestExamplePolicies(t *testing.T) {
	for _, ex := range examplesList() {
		t.Run(ex.name, func(t *testing.T) {
			if err := policies.ValidName(ex.name); err != nil {
				t.Fatal(err)
			}
			p := loadPolicy(t, ex.file, ex.name)
			if p.Description == "" {
				t.Error("no description")
			}
			again, err := policies.Parse(p.Canonical())
			if err != nil || again.Hash() != p.Hash() {
				t.Fatalf("canonical form does not parse back to the same policy: %v", err)
			}
			ex.check(t, p)

			for _, pl := range ex.targets {
				v := policies.Evaluate(p, compliantPosture(p, pl), nil, now)
				if !v.Compliant || !v.Allowed(now) {
					t.Errorf("%s: compliant posture judged %v", pl, v.Reasons)
				}
			}
			if v := policies.Evaluate(p, nil, nil, now); v.Allowed(now) || !slices.Equal(codes(v), []string{policies.CodeNoReport}) {
				t.Errorf("a device that never reported is %+v; want denied with no_report", v)
			}
			for _, tc := range ex.cases {
				for _, pl := range tc.platforms {
					pos := compliantPosture(p, pl)
					tc.mutate(pos)
					v := policies.Evaluate(p, pos, nil, now)
					want := slices.Clone(tc.want)
					if want == nil {
						want = []string{}
					}
					slices.Sort(want)
					if got := codes(v); !slices.Equal(got, want) {
						t.Errorf("%s/%s: reasons %v, want %v (%+v)", tc.name, pl, got, want, v.Reasons)
						continue
					}
					if len(want) == 0 {
						continue
					}
					if tc.allowFor == 0 && v.Allowed(now) {
						t.Errorf("%s/%s: allowed in grace until %s; want denied at once", tc.name, pl, v.GraceUntil)
					}
					if tc.allowFor > 0 && (!v.Allowed(now.Add(tc.allowFor-time.Second)) || v.Allowed(now.Add(tc.allowFor))) {
						t.Errorf("%s/%s: grace until %s; want %s", tc.name, pl, v.GraceUntil, tc.allowFor)
					}
				}
			}
		})
	}
}

// checkHIPAA asserts each requirement of the HIPAA texting baseline on the parsed policy.
func checkHIPAA(t *testing.T, p *policies.Policy) {
	if pc := p.Passcode; pc == nil || !pc.Required || pc.MinLength < 6 || pc.MaxInactivityMinutes < 1 || pc.MaxInactivityMinutes > 15 {
		t.Errorf("passcode %+v: want required, at least 6 characters, auto-lock within 15 minutes", pc)
	}
	if p.Encryption == nil || !p.Encryption.Required {
		t.Error("encryption is not required")
	}
	if s := p.Screenshots; s == nil || !isFalse(s.Allowed) || !isFalse(s.ScreenObservationAllowed) {
		t.Errorf("screenshots %+v: want disallowed", s)
	}
	if b := p.Backup; b == nil || !isFalse(b.CloudBackupAllowed) || !isFalse(b.CloudDocumentSyncAllowed) {
		t.Errorf("backup %+v: want no cloud backup or sync", b)
	}
	if n := p.Notifications; n == nil || !slices.Contains(n.Apps, policies.AppNotification{BundleID: messagingApp, Previews: policies.PreviewNever}) {
		t.Errorf("notifications %+v: want no previews for %s", n, messagingApp)
	}
	if o := p.OS; o == nil || o.IOS == "" || o.IPadOS == "" || o.MacOS == "" || o.Windows == "" || len(o.Linux) == 0 {
		t.Errorf("os %+v: want a minimum on every platform", o)
	}
	if p.Integrity == nil || !p.Integrity.BlockJailbroken {
		t.Error("jailbroken devices are not blocked")
	}
	if got := p.ReportMaxAge(); got != 15*time.Minute {
		t.Errorf("report age %s, want 15m", got)
	}
	if got := p.GracePeriod(); got != 24*time.Hour {
		t.Errorf("grace %s, want 24h", got)
	}
	for _, pl := range []policies.Platform{policies.PlatformMacOS, policies.PlatformWindows, policies.PlatformLinux} {
		if len(p.ManagedData[pl]) == 0 {
			t.Errorf("no managed_data for %s: a selective wipe would remove nothing", pl)
		}
	}
}

// checkBYOD asserts the personal-device policy stays light: no device-wide restriction, nothing
// that needs supervision, selective wipe limited to the messaging app, more grace than HIPAA.
func checkBYOD(t *testing.T, p *policies.Policy) {
	if p.Screenshots != nil || p.Backup != nil || p.Notifications != nil {
		t.Errorf("device-wide restrictions on personal devices: screenshots %+v, backup %+v, notifications %+v",
			p.Screenshots, p.Backup, p.Notifications)
	}
	for _, pl := range all {
		if s := policies.SupervisedOnlySettings(p, pl); len(s) > 0 {
			t.Errorf("%s: settings that need supervision: %v", pl, s)
		}
	}
	if p.Passcode == nil || !p.Passcode.Required || p.Encryption == nil || !p.Encryption.Required ||
		p.Integrity == nil || !p.Integrity.BlockJailbroken {
		t.Error("passcode, encryption and the jailbreak block are the floor for personal devices too")
	}
	if len(p.ManagedData) == 0 {
		t.Error("no managed_data: a selective wipe would remove nothing")
	}
	for pl, paths := range p.ManagedData {
		for _, path := range paths {
			if !strings.Contains(strings.ToLower(path), "securetext") {
				t.Errorf("%s: managed_data %q is not the messaging app's data", pl, path)
			}
			if !strings.HasPrefix(path, "~") && !strings.HasPrefix(strings.ToUpper(path), "%LOCALAPPDATA%") && !strings.HasPrefix(strings.ToUpper(path), "%APPDATA%") {
				t.Errorf("%s: managed_data %q is outside the user's own profile", pl, path)
			}
		}
	}
	if hipaa := loadPolicy(t, "hipaa-texting.yaml", "hipaa"); p.GracePeriod() <= hipaa.GracePeriod() || p.ReportMaxAge() <= hipaa.ReportMaxAge() {
		t.Errorf("grace %s and report age %s: want longer than the HIPAA baseline's", p.GracePeriod(), p.ReportMaxAge())
	}
}

// checkKiosk asserts the shared-tablet policy is at least as strict as the HIPAA baseline.
func checkKiosk(t *testing.T, p *policies.Policy) {
	hipaa := loadPolicy(t, "hipaa-texting.yaml", "hipaa")
	if p.GracePeriod() != 0 {
		t.Errorf("grace %s, want none", p.GracePeriod())
	}
	if p.ReportMaxAge() > hipaa.ReportMaxAge() {
		t.Errorf("report age %s is longer than HIPAA's %s", p.ReportMaxAge(), hipaa.ReportMaxAge())
	}
	pc := p.Passcode
	if pc == nil || !pc.Required || !pc.RequireAlphanumeric || pc.MinLength < hipaa.Passcode.MinLength ||
		pc.MaxInactivityMinutes > hipaa.Passcode.MaxInactivityMinutes || pc.MaxFailedAttempts > hipaa.Passcode.MaxFailedAttempts ||
		pc.MaxGraceMinutes == nil || *pc.MaxGraceMinutes != 0 {
		t.Errorf("passcode %+v is not stricter than HIPAA's %+v", pc, hipaa.Passcode)
	}
	if p.Encryption == nil || !p.Encryption.Required || p.Integrity == nil || !p.Integrity.BlockJailbroken {
		t.Error("encryption and the jailbreak block are required")
	}
	if s := p.Screenshots; s == nil || !isFalse(s.Allowed) || !isFalse(s.ScreenObservationAllowed) {
		t.Errorf("screenshots %+v: want disallowed", s)
	}
	if b := p.Backup; b == nil || !isFalse(b.CloudBackupAllowed) || !isFalse(b.CloudDocumentSyncAllowed) {
		t.Errorf("backup %+v: want no cloud backup or sync", b)
	}
	n := p.Notifications
	if n == nil || !isFalse(n.LockScreenViewAllowed) || !slices.ContainsFunc(n.Apps, func(a policies.AppNotification) bool { return a.BundleID == messagingApp }) {
		t.Fatalf("notifications %+v: want no lock-screen view and the messaging app listed", n)
	}
	for _, a := range n.Apps {
		if a.Previews != policies.PreviewNever {
			t.Errorf("%s shows previews %s on a shared screen", a.BundleID, a.Previews)
		}
	}
	if p.OS == nil || p.OS.IPadOS == "" {
		t.Error("no minimum iPadOS")
	}
}

func isFalse(b *bool) bool { return b != nil && !*b }

// --- Server configuration ---------------------------------------------------------------------

const configFile = "mdmserver.yaml"

// optionKeys returns the configuration keys of mdmserver.Config, dotted for nested sections,
// with the struct field each one fills.
func optionKeys(t *testing.T) map[string]reflect.StructField {
	t.Helper()
	keys := map[string]reflect.StructField{}
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if tag == "" || tag == "-" {
				t.Errorf("mdmserver.Config.%s has no mapstructure key: it cannot be set from a file", f.Name)
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(f.Type, key+".")
				continue
			}
			keys[key] = f
		}
	}
	walk(reflect.TypeFor[mdmserver.Config](), "")
	if len(keys) == 0 {
		t.Fatal("mdmserver.Config has no options")
	}
	return keys
}

// fileKeys returns the leaf keys of the example file, dotted, with the comment that documents
// each: the paragraph right above it.
func fileKeys(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", configFile, err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("%s is not a mapping", configFile)
	}
	out := map[string]string{}
	var walk func(m *yaml.Node, prefix string)
	walk = func(m *yaml.Node, prefix string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			if _, dup := out[key]; dup {
				t.Errorf("%s: line %d: %s is set twice", configFile, k.Line, key)
			}
			comment := k.HeadComment
			if i := strings.LastIndex(comment, "\n\n"); i >= 0 {
				comment = comment[i+2:] // group headings sit above the first key's own paragraph
			}
			out[key] = comment
			if v.Kind == yaml.MappingNode {
				walk(v, key+".")
			}
		}
	}
	walk(doc.Content[0], "")
	return out
}

// TestConfigFileNamesEveryOption keeps the example and mdmserver.Config in step: every option is
// in the file with a comment that gives its default, and every key in the file is an option
// (viper ignores unknown keys, so a typo or a removed option would otherwise go unnoticed).
func TestConfigFileNamesEveryOption(t *testing.T) {
	options := optionKeys(t)
	documented := fileKeys(t)
	for key, f := range options {
		comment, ok := documented[key]
		switch {
		case !ok:
			t.Errorf("option %s (Config.%s) is missing from %s", key, f.Name, configFile)
		case !strings.Contains(comment, "Default:"):
			t.Errorf("%s: the comment above %s does not give its default (\"Default: ...\")", configFile, key)
		}
	}
	for key := range documented {
		_, isOption := options[key]
		isSection := slices.ContainsFunc(slices.Collect(maps.Keys(options)), func(o string) bool { return strings.HasPrefix(o, key+".") })
		if !isOption && !isSection {
			t.Errorf("%s sets %s, which is not an option of mdmserver.Config", configFile, key)
		}
	}
}

// loadConfigFile reads the example the way cmd/mdmserver's loadConfig does (viper with the
// defaults registered, the file, then Unmarshal into mdmserver.Config), without the HALE_*
// environment so the test sees the file alone.
func loadConfigFile(t *testing.T) mdmserver.Config {
	t.Helper()
	v := viper.New()
	d := reflect.ValueOf(mdmserver.Defaults())
	for key, f := range optionKeys(t) {
		v.SetDefault(key, d.FieldByIndex(f.Index).Interface())
	}
	v.SetConfigFile(configFile)
	if err := v.ReadInConfig(); err != nil {
		t.Fatalf("read %s: %v", configFile, err)
	}
	var cfg mdmserver.Config
	if err := v.Unmarshal(&cfg); err != nil {
		t.Fatalf("decode %s: %v", configFile, err)
	}
	return cfg
}

// changedFromDefault lists the options the example deliberately sets away from Defaults(), each
// marked so in the file. None today: loading the example changes nothing.
var changedFromDefault = map[string]bool{}

func TestConfigFileIsTheDefaults(t *testing.T) {
	cfg := loadConfigFile(t)
	got, want := reflect.ValueOf(cfg), reflect.ValueOf(mdmserver.Defaults())
	for key, f := range optionKeys(t) {
		g, w := got.FieldByIndex(f.Index), want.FieldByIndex(f.Index)
		same := reflect.DeepEqual(g.Interface(), w.Interface()) ||
			g.Kind() == reflect.Slice && g.Len() == 0 && w.Len() == 0 // names: [] is the default nil
		if !same && !changedFromDefault[key] {
			t.Errorf("%s: the example sets %v, the default is %v", key, g.Interface(), w.Interface())
		}
		if same && changedFromDefault[key] {
			t.Errorf("%s is marked as changed but equals the default %v", key, w.Interface())
		}
	}

	// The server accepts it, deriving what Validate derives for the defaults.
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	d := mdmserver.Defaults()
	if err := d.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if cfg.PublicURL != d.PublicURL {
		t.Errorf("derived public URL %q, from the defaults %q", cfg.PublicURL, d.PublicURL)
	}
}

// TestConfigFileStartsAServer builds a server from the example (in a temporary data directory
// instead of ./hale-data), as `mdmserver --config examples/mdmserver.yaml` would.
func TestConfigFileStartsAServer(t *testing.T) {
	cfg := loadConfigFile(t)
	cfg.DataDir = t.TempDir()
	srv, err := mdmserver.New(cfg, mdmserver.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("mdmserver.New with the example: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hale.db", "master.key", "admin.token"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, name)); err != nil {
			t.Errorf("data directory after first start: %v", err)
		}
	}
}
