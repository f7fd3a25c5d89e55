package applesim

import "strings"

// supervisedOnlyIOS are restriction keys an unsupervised iPhone or iPad ignores, among those
// Hale's policies set (Apple's schema marks them supervised: true for iOS). The simulator leaves
// them out of what it enforces there, as a real device does.
var supervisedOnlyIOS = map[string]bool{
	"allowAirDrop": true, "allowDictation": true, "allowCloudDocumentSync": true,
	"allowKeyboardShortcuts": true, "allowPredictiveKeyboard": true,
}

// restrictive reports the value of a boolean restriction that restricts: false for allow...
// keys, true for force... and require... keys. Where profiles disagree, the device applies the
// restrictive value.
func restrictive(key string) bool { return !strings.HasPrefix(key, "allow") }

// restrictions answers the Restrictions command: GlobalRestrictions with restrictedBool, the
// boolean restrictions in force, combined over every installed
// com.apple.applicationaccess payload, the most restrictive value of each key winning. Keys no
// profile sets are left out (the device's default applies).
func (d *Device) restrictions() result {
	s := &d.state
	inForce := map[string]bool{}
	if s.platform() == MacOS {
		// "This technically does work on macOS but it returns a blank dictionary" (Apple).
		return ack(map[string]any{"GlobalRestrictions": map[string]any{}})
	}
	for _, pl := range s.PayloadsOfType("com.apple.applicationaccess") {
		for key, v := range pl.Content {
			b, ok := v.(bool)
			if !ok || strings.HasPrefix(key, "Payload") {
				continue
			}
			if !s.Supervised && supervisedOnlyIOS[key] {
				continue
			}
			if cur, seen := inForce[key]; seen && cur == restrictive(key) {
				continue
			}
			inForce[key] = b
		}
	}
	restrictedBool := make(map[string]any, len(inForce))
	for key, v := range inForce {
		restrictedBool[key] = map[string]any{"value": v}
	}
	return ack(map[string]any{"GlobalRestrictions": map[string]any{
		"restrictedBool": restrictedBool, "restrictedValue": map[string]any{},
	}})
}
