package policies

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

const dataSharingDoc = `name: ds
data_sharing:
  managed_open_in: true
  managed_pasteboard: true
  airdrop: blocked
  third_party_keyboards: blocked
  dictation: on_device_only
`

func TestDataSharingParse(t *testing.T) {
	p, err := Parse([]byte(dataSharingDoc))
	if err != nil {
		t.Fatal(err)
	}
	ds := p.DataSharing
	if ds == nil || ds.ManagedOpenIn == nil || !*ds.ManagedOpenIn || ds.ManagedPasteboard == nil || !*ds.ManagedPasteboard ||
		ds.AirDrop != AirDropBlocked || ds.ThirdPartyKeyboards != KeyboardsBlocked || ds.Dictation != DictationOnDeviceOnly {
		t.Fatalf("parsed %+v", ds)
	}
	again, err := Parse(p.Canonical())
	if err != nil || again.Hash() != p.Hash() {
		t.Fatalf("canonical form does not parse back to the same policy: %v", err)
	}
	for name, tc := range map[string]struct {
		in   string
		want []wantProblem
	}{
		"unknown airdrop": {"data_sharing:\n  airdrop: sometimes\n",
			[]wantProblem{{"data_sharing.airdrop", 2, "allowed, managed_only or blocked"}}},
		"unknown dictation": {"data_sharing:\n  dictation: cloud\n",
			[]wantProblem{{"data_sharing.dictation", 2, "allowed, on_device_only or blocked"}}},
		"not a bool":    {"data_sharing:\n  managed_open_in: maybe\n", []wantProblem{{"data_sharing.managed_open_in", 2, ""}}},
		"unknown key":   {"data_sharing:\n  bluetooth: off\n", []wantProblem{{"data_sharing.bluetooth", 2, ""}}},
		"not a mapping": {"data_sharing: [airdrop]\n", []wantProblem{{"data_sharing", 1, ""}}},
	} {
		t.Run(name, func(t *testing.T) { checkProblems(t, tc.in, tc.want) })
	}
}

// Each setting renders as Apple's keys where they exist, and only there.
func TestDataSharingRendersRestrictions(t *testing.T) {
	p, err := Parse([]byte(dataSharingDoc))
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "ds"
	for pl, want := range map[Platform]map[string]any{
		PlatformIOS: {"allowOpenFromManagedToUnmanaged": false, "allowOpenFromUnmanagedToManaged": false,
			"requireManagedPasteboard": true, "allowAirDrop": false, "forceOnDeviceOnlyDictation": true},
		PlatformMacOS: {"allowAirDrop": false, "forceOnDeviceOnlyDictation": true},
	} {
		profiles, err := RenderApple(p, pl, RenderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := decodeProfile(t, byKind(t, profiles, ProfileRestrictions).Bytes).PayloadContent[0]
		checkKeys(t, got, want)
		for _, key := range []string{"forceAirDropUnmanaged", "allowDictation"} {
			if _, ok := got[key]; ok {
				t.Errorf("%s: %s rendered for a policy that does not ask for it", pl, key)
			}
		}
		if pl == PlatformMacOS {
			for _, key := range []string{"allowOpenFromManagedToUnmanaged", "requireManagedPasteboard"} {
				if _, ok := got[key]; ok {
					t.Errorf("macos: %s rendered, but macOS has no such key", key)
				}
			}
		}
	}
	p.DataSharing.AirDrop, p.DataSharing.Dictation = AirDropManagedOnly, DictationBlocked
	profiles, err := RenderApple(p, PlatformIOS, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := decodeProfile(t, byKind(t, profiles, ProfileRestrictions).Bytes).PayloadContent[0]
	checkKeys(t, got, map[string]any{"forceAirDropUnmanaged": true, "allowDictation": false})
	if _, ok := got["allowAirDrop"]; ok {
		t.Error("managed_only renders allowAirDrop too")
	}
}

func TestDataSharingNotEnforced(t *testing.T) {
	p, err := Parse([]byte(dataSharingDoc))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]Platform{}
	for _, r := range CheckEnforced(p) {
		if r.Why == "" {
			t.Errorf("%s: no why", r.Rule)
		}
		got[r.Rule] = r.Platforms
	}
	computers := []Platform{PlatformMacOS, PlatformWindows, PlatformLinux}
	want := map[string][]Platform{
		"data_sharing.managed_open_in":       computers,
		"data_sharing.managed_pasteboard":    computers,
		"data_sharing.airdrop":               {PlatformWindows, PlatformLinux, PlatformAndroid},
		"data_sharing.dictation":             {PlatformWindows, PlatformLinux, PlatformAndroid},
		"data_sharing.third_party_keyboards": {PlatformIOS, PlatformIPadOS, PlatformMacOS, PlatformWindows, PlatformLinux},
	}
	if len(got) != len(want) {
		t.Errorf("not enforced: %v, want %v", got, want)
	}
	for rule, pls := range want {
		if !slices.Equal(got[rule], pls) {
			t.Errorf("%s not enforced on %v, want %v", rule, got[rule], pls)
		}
	}
	// A setting that restricts nothing is not listed; no data_sharing, nothing at all.
	p.DataSharing = &DataSharingPolicy{AirDrop: AirDropAllowed}
	if r := CheckEnforced(p); r == nil || len(r) != 0 {
		t.Errorf("allowed AirDrop: %+v", r)
	}
}

func TestDataSharingConflicts(t *testing.T) {
	for doc, want := range map[string]int{
		dataSharingDoc: 0,
		"data_sharing:\n  airdrop: blocked\n  managed_open_in: false\n":                            1,
		"data_sharing:\n  managed_pasteboard: true\n":                                              1,
		"data_sharing:\n  managed_pasteboard: true\n  managed_open_in: true\n  airdrop: blocked\n": 0,
	} {
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := DataSharingConflicts(p); len(got) != want {
			t.Errorf("%q: conflicts %q, want %d", doc, got, want)
		}
	}
}

// A rule counts as met only while the device reports it in force; a supervised-only setting on
// an unsupervised phone is named as such.
func TestDataSharingEvaluate(t *testing.T) {
	p, err := Parse([]byte(dataSharingDoc))
	if err != nil {
		t.Fatal(err)
	}
	p.Name = "ds"
	pos := compliantPosture(p, PlatformIOS, t0)
	inForce := map[string]bool{"allowOpenFromManagedToUnmanaged": false, "allowOpenFromUnmanagedToManaged": false,
		"requireManagedPasteboard": true, "allowAirDrop": false, "forceOnDeviceOnlyDictation": true}
	pos.Restrictions = Observe(inForce, ProvenanceMDM, t0)
	if v := Evaluate(p, pos, nil, t0); !v.Compliant {
		t.Fatalf("all in force: %+v", v.Reasons)
	}
	delete(inForce, "requireManagedPasteboard")
	v := Evaluate(p, pos, nil, t0)
	if v.Compliant || !slices.ContainsFunc(v.Reasons, func(r Reason) bool {
		return r.Code == CodeDataSharingAllowed && r.Detail == "requireManagedPasteboard"
	}) {
		t.Fatalf("pasteboard not in force: %+v", v.Reasons)
	}
	pos.Supervised = Observe(false, ProvenanceMDM, t0)
	v = Evaluate(p, pos, nil, t0)
	if !slices.ContainsFunc(v.Reasons, func(r Reason) bool { return r.Code == CodeUnsupervisedSetting && r.Detail == "allowAirDrop" }) {
		t.Errorf("unsupervised phone: %+v", v.Reasons)
	}
	// On a Linux laptop no rule applies: nothing there can enforce them.
	lin := compliantPosture(p, PlatformLinux, t0)
	if v := Evaluate(p, lin, nil, t0); !v.Compliant {
		t.Errorf("linux: %+v", v.Reasons)
	}
}

// Every restriction key Hale renders is Apple's: a boolean of com.apple.applicationaccess,
// available on each platform the table renders it for, needing supervision exactly where the
// table says; and the data_sharing keys the code says apply under User Enrollment are not
// forbidden there. It reads Apple's schema from ../shared and skips without it.
func TestRestrictionsMatchAppleSchema(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "apple-device-management", "mdm", "profiles", "com.apple.applicationaccess.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("Apple's schema is not here (%v)", err)
	}
	type osSupport struct {
		Introduced     string `yaml:"introduced"`
		Supervised     bool   `yaml:"supervised"`
		UserEnrollment struct {
			Mode string `yaml:"mode"`
		} `yaml:"userenrollment"`
	}
	var schema struct {
		PayloadKeys []struct {
			Key         string               `yaml:"key"`
			Type        string               `yaml:"type"`
			SupportedOS map[string]osSupport `yaml:"supportedOS"`
		} `yaml:"payloadkeys"`
	}
	if err := yaml.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	keys := map[string]map[string]osSupport{}
	for _, k := range schema.PayloadKeys {
		if k.Type != "<boolean>" {
			continue
		}
		keys[k.Key] = k.SupportedOS
	}
	// Apple's schema names iOS for iPhone and iPad alike.
	appleOS := map[Platform]string{PlatformIOS: "iOS", PlatformIPadOS: "iOS", PlatformMacOS: "macOS"}
	for _, r := range restrictions {
		sup, ok := keys[r.Key]
		if !ok {
			t.Errorf("%s (%s) is not a boolean key of com.apple.applicationaccess", r.Key, r.Field)
			continue
		}
		for pl, name := range appleOS {
			// A platform a key does not list inherits the payload's support (forceEncryptedBackup
			// lists only the platforms that lack it).
			s, listed := sup[name]
			available := !listed || s.Introduced != "n/a"
			if r.Platforms.has(pl) && !available {
				t.Errorf("%s is rendered on %s, where Apple's schema does not offer it", r.Key, pl)
			}
			if r.Platforms.has(pl) && r.Supervised.has(pl) != s.Supervised {
				t.Errorf("%s on %s: supervised-only %v in the table, %v in Apple's schema", r.Key, pl, r.Supervised.has(pl), s.Supervised)
			}
		}
	}
	// What a user-enrolled (personal) iPhone honours, as the examples' comments say.
	for key, honoured := range map[string]bool{
		"allowOpenFromManagedToUnmanaged": true, "allowOpenFromUnmanagedToManaged": true,
		"requireManagedPasteboard": true, "forceAirDropUnmanaged": true, "forceOnDeviceOnlyDictation": true,
		"allowAirDrop": false, "allowDictation": false,
	} {
		if got := keys[key]["iOS"].UserEnrollment.Mode != "forbidden"; got != honoured {
			t.Errorf("%s under User Enrollment: honoured %v, Apple's schema says %v", key, honoured, got)
		}
	}
}

// On Android the managed boundary is the work profile's cross-profile policies and keyboards
// are the system's; every field is the discovery document's (TestRenderAndroidSchema checks
// whole policies).
func TestDataSharingRendersAndroid(t *testing.T) {
	p, err := Parse([]byte(dataSharingDoc))
	if err != nil {
		t.Fatal(err)
	}
	wp := RenderAndroid(p, AndroidOptions{WorkProfile: true})
	cp, _ := wp["crossProfilePolicies"].(map[string]any)
	if cp["crossProfileDataSharing"] != "DATA_SHARING_FROM_WORK_TO_PERSONAL_DISALLOWED" || cp["crossProfileCopyPaste"] != "COPY_FROM_WORK_TO_PERSONAL_DISALLOWED" {
		t.Errorf("work profile crossProfilePolicies = %v", wp["crossProfilePolicies"])
	}
	company := RenderAndroid(p, AndroidOptions{})
	if _, ok := company["crossProfilePolicies"]; ok {
		t.Errorf("a company phone has no personal profile: %v", company["crossProfilePolicies"])
	}
	for name, out := range map[string]map[string]any{"work profile": wp, "company": company} {
		pim, _ := out["permittedInputMethods"].(map[string]any)
		if names, ok := pim["packageNames"].([]any); !ok || len(names) != 0 {
			t.Errorf("%s: permittedInputMethods = %v, want only the system's", name, out["permittedInputMethods"])
		}
	}
}
