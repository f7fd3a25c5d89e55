package policies

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// AirDropMode says what AirDrop may carry off a device.
type AirDropMode string

// The AirDrop choices.
const (
	// AirDropAllowed leaves AirDrop alone.
	AirDropAllowed AirDropMode = "allowed"
	// AirDropManagedOnly treats AirDrop as an unmanaged destination (Apple
	// forceAirDropUnmanaged): with managed_open_in, nothing from a managed app can be AirDropped.
	AirDropManagedOnly AirDropMode = "managed_only"
	// AirDropBlocked turns AirDrop off (Apple allowAirDrop false; supervised iPhones and iPads).
	AirDropBlocked AirDropMode = "blocked"
)

// DictationMode says where dictation in any app may send what is spoken.
type DictationMode string

// The dictation choices.
const (
	DictationAllowed DictationMode = "allowed"
	// DictationOnDeviceOnly keeps dictation on the device (Apple forceOnDeviceOnlyDictation):
	// no audio of what a clinician dictates reaches Apple's servers.
	DictationOnDeviceOnly DictationMode = "on_device_only"
	// DictationBlocked turns dictation off (Apple allowDictation false; supervised on iOS).
	DictationBlocked DictationMode = "blocked"
)

// KeyboardMode says whether keyboards from other apps may type in managed apps.
type KeyboardMode string

// The keyboard choices.
const (
	KeyboardsAllowed KeyboardMode = "allowed"
	// KeyboardsBlocked keeps third-party keyboards out of managed apps. Apple's MDM has no
	// such control (the messaging app refuses custom keyboards itself); the satisfiability
	// check says so.
	KeyboardsBlocked KeyboardMode = "blocked"
)

// DataSharingPolicy keeps PHI inside the managed (secure) apps: where documents open, where
// copied text pastes, what AirDrop, keyboards and dictation may carry off the device. A nil
// field is not managed.
type DataSharingPolicy struct {
	// ManagedOpenIn true: documents and links from managed apps open only in managed apps, and
	// unmanaged apps cannot open into managed ones (Apple allowOpenFromManagedToUnmanaged and
	// allowOpenFromUnmanagedToManaged false).
	ManagedOpenIn *bool `json:"managed_open_in,omitempty"`
	// ManagedPasteboard true: copy and paste honour the same boundary (Apple
	// requireManagedPasteboard, iOS 15).
	ManagedPasteboard *bool `json:"managed_pasteboard,omitempty"`
	// AirDrop is allowed, managed_only or blocked; empty is not managed.
	AirDrop AirDropMode `json:"airdrop,omitempty"`
	// ThirdPartyKeyboards is whether other apps' keyboards may type in managed apps.
	ThirdPartyKeyboards KeyboardMode `json:"third_party_keyboards,omitempty"`
	// Dictation is allowed, on_device_only or blocked.
	Dictation DictationMode `json:"dictation,omitempty"`
}

// dataSharingRules are the data_sharing settings a policy can restrict, by field, with the
// platforms where some control enforces them. Elsewhere the satisfiability check reports them
// as not enforced (see CheckObservable), and evaluation does not hold devices to them.
var dataSharingRules = []struct {
	field     string
	restricts func(*DataSharingPolicy) bool
}{
	{"data_sharing.managed_open_in", func(ds *DataSharingPolicy) bool { return ds.ManagedOpenIn != nil && *ds.ManagedOpenIn }},
	{"data_sharing.managed_pasteboard", func(ds *DataSharingPolicy) bool { return ds.ManagedPasteboard != nil && *ds.ManagedPasteboard }},
	{"data_sharing.airdrop", func(ds *DataSharingPolicy) bool {
		return ds.AirDrop == AirDropManagedOnly || ds.AirDrop == AirDropBlocked
	}},
	{"data_sharing.third_party_keyboards", func(ds *DataSharingPolicy) bool { return ds.ThirdPartyKeyboards == KeyboardsBlocked }},
	{"data_sharing.dictation", func(ds *DataSharingPolicy) bool {
		return ds.Dictation == DictationOnDeviceOnly || ds.Dictation == DictationBlocked
	}},
}

// androidEnforced are the data_sharing rules RenderAndroid renders: the managed boundary (the
// work profile's cross-profile policies; a company phone has only managed apps) and keyboards
// (permittedInputMethods). AMAPI has no AirDrop or dictation control.
var androidEnforced = map[string]bool{
	"data_sharing.managed_open_in": true, "data_sharing.managed_pasteboard": true,
	"data_sharing.third_party_keyboards": true,
}

// notEnforced lists the data_sharing rules p restricts that no control enforces on pl: no
// restriction key (Apple) or policy field (Android) for the field exists there.
func notEnforced(p *Policy, pl Platform) []string {
	if p.DataSharing == nil {
		return nil
	}
	var out []string
	for _, r := range dataSharingRules {
		if !r.restricts(p.DataSharing) {
			continue
		}
		enforced := pl == PlatformAndroid && androidEnforced[r.field]
		for i := range restrictions {
			k := &restrictions[i]
			if _, set := k.value(p); set && k.Field == r.field && k.Platforms.has(pl) {
				enforced = true
				break
			}
		}
		if !enforced {
			out = append(out, r.field)
		}
	}
	return out
}

// DataSharingConflicts names the settings of a valid policy that undo each other's purpose:
// the policy applies, and dry-run says so.
func DataSharingConflicts(p *Policy) []string {
	ds := p.DataSharing
	if ds == nil {
		return nil
	}
	var out []string
	if ds.AirDrop == AirDropBlocked && ds.ManagedOpenIn != nil && !*ds.ManagedOpenIn {
		out = append(out, "data_sharing.airdrop is blocked while data_sharing.managed_open_in is false: "+
			"AirDrop is closed, but any app can still open a managed app's documents and send them on")
	}
	if ds.ManagedPasteboard != nil && *ds.ManagedPasteboard && (ds.ManagedOpenIn == nil || !*ds.ManagedOpenIn) {
		out = append(out, "data_sharing.managed_pasteboard follows the open-in boundary, which "+
			"data_sharing.managed_open_in does not set: on its own it keeps nothing in")
	}
	return out
}

func (d *decoder) dataSharing(field string, n *yaml.Node) *DataSharingPolicy {
	ds := &DataSharingPolicy{}
	d.mapping(field, n, map[string]func(string, *yaml.Node){
		"managed_open_in":    func(f string, n *yaml.Node) { d.optBool(f, n, &ds.ManagedOpenIn) },
		"managed_pasteboard": func(f string, n *yaml.Node) { d.optBool(f, n, &ds.ManagedPasteboard) },
		"airdrop": func(f string, n *yaml.Node) {
			choice(d, f, n, &ds.AirDrop, AirDropAllowed, AirDropManagedOnly, AirDropBlocked)
		},
		"third_party_keyboards": func(f string, n *yaml.Node) {
			choice(d, f, n, &ds.ThirdPartyKeyboards, KeyboardsAllowed, KeyboardsBlocked)
		},
		"dictation": func(f string, n *yaml.Node) {
			choice(d, f, n, &ds.Dictation, DictationAllowed, DictationOnDeviceOnly, DictationBlocked)
		},
	})
	return ds
}

// choice decodes one of the allowed strings into dst.
func choice[T ~string](d *decoder, field string, n *yaml.Node, dst *T, allowed ...T) {
	var s string
	if !d.str(field, n, 32, &s) {
		return
	}
	if !slices.Contains(allowed, T(s)) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = string(a)
		}
		d.fail(field, n, "must be %s (got %q)", orList(names), clip(s))
		return
	}
	*dst = T(s)
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return fmt.Sprintf("%s or %s", strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// NotEnforcedRule is a rule of a policy that no control on some platforms enforces: nothing
// there can keep the data in, so devices there are not held to it (evaluation skips it) and the
// messaging app is the only guard. It is the other half of the satisfiability check: a rule
// that cannot be observed fails closed (UnobservableRule); a rule that cannot be enforced is
// said out loud instead of pretended.
type NotEnforcedRule struct {
	// Rule is the policy field ("data_sharing.managed_pasteboard").
	Rule string `json:"rule"`
	// Platforms are where no control for it exists.
	Platforms []Platform `json:"platforms"`
	// Why says it in a sentence for people.
	Why string `json:"why"`
}

// allPlatforms are the platforms Hale manages, in their usual order.
var allPlatforms = []Platform{PlatformIOS, PlatformIPadOS, PlatformMacOS, PlatformWindows, PlatformLinux, PlatformAndroid}

// CheckEnforced returns the rules of p that no control enforces on some platforms, sorted by
// rule; never nil.
func CheckEnforced(p *Policy) []NotEnforcedRule {
	out := []NotEnforcedRule{}
	if p == nil || p.DataSharing == nil {
		return out
	}
	for _, r := range dataSharingRules {
		var pls []Platform
		for _, pl := range allPlatforms {
			if slices.Contains(notEnforced(p, pl), r.field) {
				pls = append(pls, pl)
			}
		}
		if len(pls) == 0 {
			continue
		}
		names := make([]string, len(pls))
		for i, pl := range pls {
			names[i] = string(pl)
		}
		out = append(out, NotEnforcedRule{Rule: r.field, Platforms: pls,
			Why: fmt.Sprintf("%s has no device control on %s: devices there are not held to it, and only the "+
				"messaging app itself can keep the data in%s", r.field, orList(names), enforceHints[r.field])})
	}
	return out
}

// enforceHints say what does enforce a rule where the device cannot.
var enforceHints = map[string]string{
	"data_sharing.third_party_keyboards": " (on iOS the app refuses custom keyboards with " +
		"application(_:shouldAllowExtensionPointIdentifier:); Android phones allow only the system's)",
}
