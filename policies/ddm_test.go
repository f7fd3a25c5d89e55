package policies

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/ddmschema"
)

// schemaDir is Apple's schema beside the repository (../shared), as CI lays it out.
var schemaDir = filepath.Join("..", "..", "shared", "apple-device-management")

func loadSchema(t *testing.T) *ddmschema.Set {
	t.Helper()
	if _, err := os.Stat(schemaDir); err != nil {
		t.Skipf("Apple's schema is not at %s: %v", schemaDir, err)
	}
	s, err := ddmschema.Load(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const deadlinePolicy = `
passcode: {required: true, min_length: 6, max_inactivity_minutes: 30, max_grace_minutes: 0, max_failed_attempts: 10, max_age_days: 90, history: 5, require_alphanumeric: true, min_complex_chars: 1}
encryption: {required: true}
screenshots: {allowed: false}
backup: {cloud_backup_allowed: false}
notifications: {lock_screen_view_allowed: false, apps: [{bundle_id: com.example.securetext, previews: never}]}
os:
  ios: "17.4"
  update_deadline:
    ios: {version: "17.6.1", build: 21G93, deadline: "2026-01-15T18:00:00"}
    macos: {version: "14.6", deadline: "2026-01-15T18:00:00"}
`

func profileURL(p Profile) (string, error) {
	return "https://mdm.example.org/ddm/profiles/" + p.Identifier, nil
}

func renderFile(t *testing.T, path, name string) *Policy {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	p.Name = name
	return p
}

// Every declaration Hale renders, for every shipped example and a policy using every passcode
// rule and an OS update deadline, on each Apple platform, validates against Apple's schema:
// key names, types, required keys, allowed values and ranges, and availability on the OS
// versions Hale offers declarative management to. So does the tokens and manifest shape.
func TestDeclarationsMatchAppleSchema(t *testing.T) {
	schema := loadSchema(t)
	p, err := Parse([]byte(deadlinePolicy))
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "deadline"
	pols := []*Policy{p}
	for _, f := range []string{"hipaa-texting", "byod", "kiosk"} {
		pols = append(pols, renderFile(t, filepath.Join("..", "examples", "policies", f+".yaml"), f))
	}
	esc := testEscrowCert(t)
	for _, pol := range pols {
		for _, pl := range []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS} {
			decls, _, err := RenderDeclarations(pol, pl, DeclarationOptions{ProfileURL: profileURL,
				Profiles: RenderOptions{EscrowCertificate: esc}})
			if err != nil {
				t.Fatalf("%s on %s: %v", pol.Name, pl, err)
			}
			os, version := "iOS", MinDeclarativeOS(pl)
			if pl == PlatformMacOS {
				os = "macOS"
			}
			for _, d := range decls {
				var m map[string]any
				b, _ := json.Marshal(d)
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatal(err)
				}
				for _, err := range schema.ValidateDeclaration(m, ddmschema.Platform{OS: os, Version: version, Enrollment: "supervised"}) {
					t.Errorf("%s on %s: %s: %v", pol.Name, pl, d.Identifier, err)
				}
				if len(d.ServerToken) > 64 || len(d.Identifier) > 64 {
					t.Errorf("%s: identifier or token longer than Apple's 64 octets", d.Identifier)
				}
				if d.Type == DeclarationTypeStatus {
					for _, it := range d.Payload["StatusItems"].([]any) {
						name := it.(map[string]any)["Name"].(string)
						if schema.StatusItems[name] == nil {
							t.Errorf("subscribed to %s, which is not a status item", name)
						}
					}
				}
			}
		}
	}
}

// The schema check fails on what Apple would refuse, so the test above can fail.
func TestSchemaCheckerCatchesMistakes(t *testing.T) {
	schema := loadSchema(t)
	ios := ddmschema.Platform{OS: "iOS", Version: "17.0"}
	bad := []map[string]any{
		{"Type": DeclarationTypePasscode, "Identifier": "x", "ServerToken": "t", "Payload": map[string]any{"MinimumLength": 20.0}},
		{"Type": DeclarationTypePasscode, "Identifier": "x", "ServerToken": "t", "Payload": map[string]any{"MinimumLenght": 6.0}},
		{"Type": DeclarationTypePasscode, "Identifier": "x", "ServerToken": "t", "Payload": map[string]any{"RequirePasscode": "yes"}},
		{"Type": DeclarationTypeSoftwareUpdate, "Identifier": "x", "ServerToken": "t", "Payload": map[string]any{"TargetOSVersion": "17.6"}},
		{"Type": DeclarationTypeLegacy, "Identifier": "x", "Payload": map[string]any{"ProfileURL": "https://x"}},
	}
	for i, d := range bad {
		if errs := schema.ValidateDeclaration(d, ios); len(errs) == 0 {
			t.Errorf("bad declaration %d passed", i)
		}
	}
	su := map[string]any{"Type": DeclarationTypeSoftwareUpdate, "Identifier": "x", "ServerToken": "t",
		"Payload": map[string]any{"TargetOSVersion": "17.6", "TargetLocalDateTime": "2026-01-01T00:00:00"}}
	if errs := schema.ValidateDeclaration(su, ddmschema.Platform{OS: "iOS", Version: "16.4"}); len(errs) == 0 {
		t.Error("enforcement.specific passed on iOS 16.4 (introduced in 17.0)")
	}
	if errs := schema.ValidateStatusItem("softwareupdate.install-state", "sleeping", ios); len(errs) == 0 {
		t.Error("install-state outside its rangelist passed")
	}
}

// A policy change changes the tokens of what it changed, and only those; the same policy
// renders the same declarations.
func TestDeclarationTokens(t *testing.T) {
	p, err := Parse([]byte(deadlinePolicy))
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "deadline"
	opts := DeclarationOptions{ProfileURL: profileURL}
	a, legacy, err := RenderDeclarations(p, PlatformIOS, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := RenderDeclarations(p, PlatformIOS, opts)
	if DeclarationsToken(a) != DeclarationsToken(b) {
		t.Fatal("same policy, different tokens")
	}
	kinds := []string{}
	for _, l := range legacy {
		kinds = append(kinds, l.Kind)
	}
	if !slices.Equal(kinds, []string{ProfileRestrictions, ProfileNotifications}) {
		t.Errorf("legacy profiles %v", kinds)
	}
	p.Passcode.MinLength = 8
	c, _, _ := RenderDeclarations(p, PlatformIOS, opts)
	if DeclarationsToken(a) == DeclarationsToken(c) {
		t.Fatal("a changed passcode rule kept the declarations token")
	}
	for i := range a {
		changed := a[i].ServerToken != c[i].ServerToken
		want := a[i].Type == DeclarationTypePasscode
		if changed != want {
			t.Errorf("%s: token changed=%v", a[i].Identifier, changed)
		}
	}
	if got := a[len(a)-1]; got.Type != DeclarationTypeActivation || len(got.Payload["StandardConfigurations"].([]any)) != len(a)-1 {
		t.Errorf("the activation does not activate every configuration: %+v", got)
	}
}

func TestUpdateDeadlineValidation(t *testing.T) {
	for _, doc := range []string{
		"os: {update_deadline: {ios: {version: \"17.6\"}}}",
		"os: {update_deadline: {ios: {version: \"17.6\", deadline: \"2026-01-15 18:00\"}}}",
		"os: {update_deadline: {ios: {version: \"17.6\", deadline: \"2026-01-15T18:00:00Z\"}}}",
		"os: {update_deadline: {windows: {version: \"10\", deadline: \"2026-01-15T18:00:00\"}}}",
		"os: {update_deadline: {ios: {version: \"x\", deadline: \"2026-01-15T18:00:00\"}}}",
		"os: {update_deadline: {ios: {version: \"17.6\", build: \"21 G\", deadline: \"2026-01-15T18:00:00\"}}}",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), "update_deadline") {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

// On declarative management the declarations' status is the evidence a policy is installed; a
// declaration reported invalid or inactive denies with its identifier and the device's reasons.
func TestEvaluateDeclarations(t *testing.T) {
	p := renderFile(t, filepath.Join("..", "examples", "policies", "hipaa-texting.yaml"), "hipaa")
	now := mustTime(t, "2026-03-01T12:00:00Z")
	decls, _, err := RenderDeclarations(p, PlatformIOS, DeclarationOptions{ProfileURL: profileURL})
	if err != nil {
		t.Fatal(err)
	}
	var states []DeclarationState
	for _, d := range decls {
		states = append(states, DeclarationState{Identifier: d.Identifier, ServerToken: d.ServerToken, Category: d.Category(), Active: true, Valid: "valid"})
	}
	pos := &Posture{Platform: PlatformIOS, ReportedAt: now,
		OS:                Observe(OSInfo{Version: "17.5"}, ProvenanceMDM, now),
		Supervised:        Observe(true, ProvenanceMDM, now),
		PasscodePresent:   Observe(true, ProvenanceMDM, now),
		PasscodeCompliant: Observe(true, ProvenanceMDM, now),
		DiskEncrypted:     Observe(true, ProvenanceMDM, now),
		Declarations:      Observe(states, ProvenanceMDM, now),
		// The example requires the messaging app's attested evidence.
		Jailbroken:  Observe(false, ProvenanceApp, now),
		AppAttested: Observe(true, ProvenanceAttested, now),
	}
	if v := Evaluate(p, pos, nil, now); !v.Compliant {
		t.Fatalf("every declaration active: %+v", v.Reasons)
	}
	states[0].Valid, states[0].Active, states[0].Reasons = "invalid", false, []string{"Error.ConfigurationCannotBeApplied"}
	v := Evaluate(p, pos, nil, now)
	var codes []string
	for _, r := range v.Reasons {
		codes = append(codes, r.Code)
		if r.Code == CodeDeclarationFailed && !strings.Contains(r.Detail, "Error.ConfigurationCannotBeApplied") {
			t.Errorf("detail %q", r.Detail)
		}
	}
	if !slices.Contains(codes, CodeDeclarationFailed) || !slices.Contains(codes, CodePolicyNotInstalled) {
		t.Fatalf("a refused passcode declaration: %v", codes)
	}
	pos.Declarations = nil
	if v := Evaluate(p, pos, nil, now); v.Compliant {
		t.Fatal("neither profiles nor declarations known, yet compliant")
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
