package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DeclarationIdentifierPrefix starts the Identifier of every declaration Hale renders:
// DeclarationIdentifierPrefix + policy name + "." + kind, e.g.
// "io.github.halemdm.ddm.hipaa.passcode".
const DeclarationIdentifierPrefix = "io.github.halemdm.ddm."

// The declaration kinds Hale renders per policy (the last part of the identifier). A legacy
// declaration's kind is "legacy." + the profile kind it carries.
const (
	DeclarationPasscode       = "passcode"
	DeclarationSoftwareUpdate = "softwareupdate"
	DeclarationStatus         = "status-subscriptions"
	DeclarationActivation     = "activation"
	declarationLegacy         = "legacy."
)

// Apple declaration types Hale renders.
const (
	DeclarationTypeActivation     = "com.apple.activation.simple"
	DeclarationTypePasscode       = "com.apple.configuration.passcode.settings"
	DeclarationTypeSoftwareUpdate = "com.apple.configuration.softwareupdate.enforcement.specific"
	DeclarationTypeLegacy         = "com.apple.configuration.legacy"
	DeclarationTypeStatus         = "com.apple.configuration.management.status-subscriptions"
)

// DeclarationIdentifier returns the Identifier of a policy's declaration of the given kind.
func DeclarationIdentifier(policyName, kind string) string {
	return DeclarationIdentifierPrefix + policyName + "." + kind
}

// LegacyDeclarationKind is the declaration kind that carries the profile of profileKind.
func LegacyDeclarationKind(profileKind string) string { return declarationLegacy + profileKind }

// Declaration is one declarative device management declaration, as the device fetches it.
type Declaration struct {
	Type        string         `json:"Type"`
	Identifier  string         `json:"Identifier"`
	ServerToken string         `json:"ServerToken"`
	Payload     map[string]any `json:"Payload"`
}

// Category is the declaration's category in the declaration-items manifest and its URL:
// activation, configuration, asset or management.
func (d Declaration) Category() string {
	switch {
	case strings.HasPrefix(d.Type, "com.apple.activation."):
		return "activation"
	case strings.HasPrefix(d.Type, "com.apple.asset."):
		return "asset"
	case strings.HasPrefix(d.Type, "com.apple.management."):
		return "management"
	}
	return "configuration"
}

// StatusItems are the status items Hale subscribes every device on declarative management to;
// each feeds a posture claim (FileVault only on macOS, where it exists).
var StatusItems = []string{
	"passcode.is-compliant", "passcode.is-present",
	"device.operating-system.version", "device.operating-system.build-version",
	"softwareupdate.install-state", "softwareupdate.pending-version",
	"management.declarations",
}

// statusItemsFor lists the status items to subscribe to on pl: Apple documents the passcode
// items for iOS and iPadOS only, FileVault for macOS only.
func statusItemsFor(pl Platform) []string {
	out := make([]string, 0, len(StatusItems)+1)
	for _, s := range StatusItems {
		if pl == PlatformMacOS && strings.HasPrefix(s, "passcode.") {
			continue
		}
		out = append(out, s)
	}
	if pl == PlatformMacOS {
		out = append(out, "diskmanagement.filevault.enabled")
	}
	return out
}

// DeclarationOptions carries what rendering declarations needs beyond the policy.
type DeclarationOptions struct {
	// ProfileURL is the https URL on the MDM server a legacy declaration tells the device to
	// download a profile from (Apple requires the MDM server to host it). Required when the
	// policy renders profiles besides the passcode.
	ProfileURL func(p Profile) (string, error)
	// Profiles are the options the profiles inside legacy declarations are rendered with; leave
	// Signer nil here (the bytes are hashed into the URL, and signatures are not deterministic).
	Profiles RenderOptions
	// UserEnrollment renders for a personal device (account-driven User Enrollment), where
	// Apple allows no OS update enforcement: the deadline is left out.
	UserEnrollment bool
}

// RenderDeclarations renders what carries a policy to an Apple device on declarative
// management: passcode settings (com.apple.configuration.passcode.settings), the OS update the
// policy sets for the platform (softwareupdate.enforcement.specific), every other profile
// RenderApple makes (restrictions, FileVault, notifications) as a legacy configuration, the
// status subscriptions that feed posture, and one activation of them all. Same policy and
// options, same declarations and tokens. It also returns the profiles the legacy declarations
// point at (unsigned).
func RenderDeclarations(p *Policy, pl Platform, opts DeclarationOptions) ([]Declaration, []Profile, error) {
	if p == nil {
		return nil, nil, errors.New("render declarations: no policy")
	}
	if opts.Profiles.Signer != nil {
		return nil, nil, errors.New("render declarations: render the legacy profiles unsigned; sign them when serving")
	}
	profiles, err := RenderApple(p, pl, opts.Profiles)
	if err != nil {
		return nil, nil, err
	}
	var out []Declaration
	add := func(kind, typ string, payload map[string]any) {
		out = append(out, newDeclaration(DeclarationIdentifier(p.Name, kind), typ, payload))
	}
	if p.Passcode.rendersPasscode() {
		add(DeclarationPasscode, DeclarationTypePasscode, passcodeSettings(p.Passcode))
	}
	if u, ok := p.OS.UpdateFor(pl); ok && !opts.UserEnrollment {
		payload := map[string]any{"TargetOSVersion": u.Version, "TargetLocalDateTime": u.Deadline}
		if u.Build != "" {
			payload["TargetBuildVersion"] = u.Build
		}
		add(DeclarationSoftwareUpdate, DeclarationTypeSoftwareUpdate, payload)
	}
	var legacy []Profile
	for _, prof := range profiles {
		if prof.Kind == ProfilePasscode {
			continue // passcode.settings carries it
		}
		if opts.ProfileURL == nil {
			return nil, nil, errors.New("render declarations: the policy needs profiles: set DeclarationOptions.ProfileURL")
		}
		u, err := opts.ProfileURL(prof)
		if err != nil {
			return nil, nil, fmt.Errorf("render declarations: profile URL of %s: %w", prof.Identifier, err)
		}
		if !strings.HasPrefix(u, "https://") {
			return nil, nil, fmt.Errorf("render declarations: profile URL %q must start with https://", u)
		}
		add(LegacyDeclarationKind(prof.Kind), DeclarationTypeLegacy, map[string]any{"ProfileURL": u})
		legacy = append(legacy, prof)
	}
	items := []any{}
	for _, s := range statusItemsFor(pl) {
		items = append(items, map[string]any{"Name": s})
	}
	add(DeclarationStatus, DeclarationTypeStatus, map[string]any{"StatusItems": items})
	configs := []any{}
	for _, d := range out {
		configs = append(configs, d.Identifier)
	}
	add(DeclarationActivation, DeclarationTypeActivation, map[string]any{"StandardConfigurations": configs})
	return out, legacy, nil
}

// passcodeSettings maps the passcode rules to passcode.settings keys, within the ranges Apple's
// schema allows (stricter, never weaker, where Hale's range is wider).
func passcodeSettings(pc *PasscodePolicy) map[string]any {
	c := map[string]any{}
	if pc.needsPasscode() {
		c["RequirePasscode"] = true
		c["RequireComplexPasscode"] = true // the profile's allowSimple false
	}
	if pc.MinLength > 0 {
		c["MinimumLength"] = pc.MinLength
	}
	if pc.RequireAlphanumeric {
		c["RequireAlphanumericPasscode"] = true
	}
	if pc.MinComplexChars > 0 {
		c["MinimumComplexCharacters"] = pc.MinComplexChars
	}
	if pc.MaxInactivityMinutes > 0 {
		c["MaximumInactivityInMinutes"] = min(pc.MaxInactivityMinutes, 15)
	}
	if pc.MaxGraceMinutes != nil {
		c["MaximumGracePeriodInMinutes"] = *pc.MaxGraceMinutes
	}
	if pc.MaxFailedAttempts > 0 {
		c["MaximumFailedAttempts"] = pc.MaxFailedAttempts
	}
	if pc.MaxAgeDays > 0 {
		c["MaximumPasscodeAgeInDays"] = pc.MaxAgeDays
	}
	if pc.History > 0 {
		c["PasscodeReuseLimit"] = pc.History
	}
	return c
}

// newDeclaration builds a declaration whose ServerToken is a hash of its whole content, so that
// any change to it changes the token (Apple's requirement).
func newDeclaration(id, typ string, payload map[string]any) Declaration {
	b, _ := json.Marshal(struct {
		T, I string
		P    map[string]any
	}{typ, id, payload}) // encoding/json sorts map keys: canonical
	sum := sha256.Sum256(b)
	return Declaration{Type: typ, Identifier: id, ServerToken: hex.EncodeToString(sum[:20]), Payload: payload}
}

// DeclarationsToken is the token of a set of declarations: a hash of every identifier and
// server token, which changes whenever a declaration is added, removed or changed.
func DeclarationsToken(decls []Declaration) string {
	keys := make([]string, 0, len(decls))
	for _, d := range decls {
		keys = append(keys, d.Identifier+"\x00"+d.ServerToken)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// MinDeclarativeOS is the oldest OS version Hale serves declarative management to on pl: the
// release that brought every declaration Hale renders there (softwareupdate.enforcement.specific
// came last: iOS and iPadOS 17, macOS 14). "" for a platform without it.
func MinDeclarativeOS(pl Platform) string {
	switch pl {
	case PlatformIOS, PlatformIPadOS:
		return "17.0"
	case PlatformMacOS:
		return "14.0"
	}
	return ""
}

// SupportsDeclarative reports whether a device of pl running version gets declarative
// management; older ones keep configuration profiles.
func SupportsDeclarative(pl Platform, version string) bool {
	minV := MinDeclarativeOS(pl)
	if minV == "" || version == "" {
		return false
	}
	c, err := CompareVersions(version, minV)
	return err == nil && c >= 0
}
