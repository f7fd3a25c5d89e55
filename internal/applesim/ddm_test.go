package applesim

import (
	"reflect"
	"testing"
)

// Status items nest by the parts of their dotted names, as Apple's StatusReport carries them.
func TestNest(t *testing.T) {
	got := nest(map[string]any{"passcode.is-compliant": true, "device.operating-system.version": "17.5",
		"device.operating-system.build-version": "21F90"})
	want := map[string]any{"passcode": map[string]any{"is-compliant": true},
		"device": map[string]any{"operating-system": map[string]any{"version": "17.5", "build-version": "21F90"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("nest = %v", got)
	}
}

// Active passcode settings decide passcode compliance as installed passcode profiles do; an
// inactive or refused declaration does not count; only subscribed items are reported.
func TestDeclarationsDecidePasscodeAndStatus(t *testing.T) {
	s := IOSState()
	s.PasscodeLength = 4
	s.DDM.Declarations = []Declaration{
		{Type: "com.apple.configuration.passcode.settings", Identifier: "p", Category: "configuration",
			Payload: map[string]any{"MinimumLength": 6.0}, Active: true, Valid: "valid"},
		{Type: "com.apple.configuration.management.status-subscriptions", Identifier: "s", Category: "configuration",
			Payload: map[string]any{"StatusItems": []any{map[string]any{"Name": "passcode.is-compliant"}}}, Active: true, Valid: "valid"},
	}
	if s.PasscodeCompliant() {
		t.Fatal("a 4-character passcode meets MinimumLength 6")
	}
	v := s.statusValues()
	if len(v) != 1 || v["passcode.is-compliant"] != false {
		t.Fatalf("status values %v", v)
	}
	s.DDM.Declarations[0].Active = false
	if !s.PasscodeCompliant() {
		t.Fatal("an inactive declaration still counts")
	}
	if !versionLess("17.5.1", "17.6") || versionLess("17.6", "17.6") || !versionLess("9.9", "10") {
		t.Fatal("versionLess")
	}
}
