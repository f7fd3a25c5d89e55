package policies

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/micromdm/plist"
)

// ProfileSigner signs a rendered configuration profile (CMS SignedData in the server). The
// renderer stays free of keys; the server supplies one.
type ProfileSigner interface {
	Sign(unsigned []byte) ([]byte, error)
}

// RenderOptions carries what rendering needs beyond the policy.
type RenderOptions struct {
	// Organization is the PayloadOrganization shown on the device; default "Hale".
	Organization string
	// EscrowCertificate is the DER certificate the FileVault personal recovery key is encrypted
	// to (com.apple.security.FDERecoveryKeyEscrow). Required on macOS when the policy requires
	// encryption: Hale never lets a Mac encrypt without escrowing its recovery key.
	EscrowCertificate []byte
	// EscrowLocation is the text macOS shows the user about where the key is escrowed; default
	// "your organization's Hale MDM server".
	EscrowLocation string
	// Signer, when set, signs every profile.
	Signer ProfileSigner
}

// Profile is one rendered configuration profile.
type Profile struct {
	// Identifier is the PayloadIdentifier (see ProfileIdentifier); UUID the PayloadUUID. Both
	// derive from the policy name and the profile kind only, so an updated policy replaces the
	// installed profile rather than adding a second one.
	Identifier string
	UUID       string
	// Kind is one of ProfilePasscode, ProfileRestrictions, ProfileFileVault,
	// ProfileNotifications.
	Kind string
	// PayloadTypes lists the payloads inside, in order.
	PayloadTypes []string
	// Bytes is the profile: an XML property list, signed if RenderOptions.Signer was set.
	Bytes  []byte
	Signed bool
	// SupervisedOnly names the settings in this profile that an unsupervised device ignores
	// (restriction keys) or refuses (payload types). Evaluation reports them as
	// unsupervised_setting on such devices.
	SupervisedOnly []string
	// RequiresSupervision is true when an unsupervised device refuses the whole profile; the
	// server should not send it to one.
	RequiresSupervision bool
}

// uuidNamespace roots every UUID Hale derives for profiles and payloads (UUIDv5).
var uuidNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/halemdm/hale/policies"))

func derivedUUID(policyName, what string) string {
	return uuid.NewSHA1(uuidNamespace, []byte(policyName+"\x00"+what)).String()
}

// RenderApple renders the configuration profiles that carry a policy to an Apple device:
// passcode (com.apple.mobiledevice.passwordpolicy), restrictions (com.apple.applicationaccess),
// FileVault with recovery key escrow on macOS, and notification previews
// (com.apple.notificationsettings). Profiles come out in that order, only those the policy
// needs on the platform. Same policy and options, same bytes.
//
// The policy must have a valid Name (it is part of every identifier).
func RenderApple(p *Policy, platform Platform, opts RenderOptions) ([]Profile, error) {
	if p == nil {
		return nil, errors.New("render apple profiles: no policy")
	}
	if err := ValidName(p.Name); err != nil {
		return nil, fmt.Errorf("render apple profiles: %w (the store assigns the name before rendering)", err)
	}
	if !appleAll.has(platform) {
		return nil, fmt.Errorf("render apple profiles: platform %q is not an Apple platform (ios, ipados, macos)", platform)
	}
	r := renderer{p: p, platform: platform, opts: opts}
	if r.opts.Organization == "" {
		r.opts.Organization = "Hale"
	}
	if r.opts.EscrowLocation == "" {
		r.opts.EscrowLocation = "your organization's Hale MDM server"
	}
	k := expectedAppleProfiles(p, platform, true)
	var out []Profile
	add := func(want bool, build func() (Profile, error)) error {
		if !want {
			return nil
		}
		prof, err := build()
		if err != nil {
			return err
		}
		out = append(out, prof)
		return nil
	}
	if err := errors.Join(
		add(k.passcode, r.passcode),
		add(k.restrictions, r.restrictions),
		add(k.fileVault, r.fileVault),
		add(k.notifications, r.notifications),
	); err != nil {
		return nil, fmt.Errorf("render apple profiles for policy %s: %w", p.Name, err)
	}
	return out, nil
}

type renderer struct {
	p        *Policy
	platform Platform
	opts     RenderOptions
}

type dict = map[string]any

// payload fills the keys every payload has.
func (r *renderer) payload(kind, payloadType, display string, content dict) dict {
	content["PayloadType"] = payloadType
	content["PayloadVersion"] = 1
	content["PayloadIdentifier"] = ProfileIdentifier(r.p.Name, kind) + "." + payloadType
	content["PayloadUUID"] = derivedUUID(r.p.Name, "payload:"+payloadType)
	content["PayloadDisplayName"] = display
	return content
}

// profile wraps payloads in a top-level Configuration profile, encodes and signs it.
func (r *renderer) profile(kind, display string, payloads []dict, supervisedOnly []string, requiresSupervision bool) (Profile, error) {
	id := ProfileIdentifier(r.p.Name, kind)
	u := derivedUUID(r.p.Name, "profile:"+kind)
	content := make([]any, len(payloads))
	types := make([]string, len(payloads))
	for i, pl := range payloads {
		content[i] = pl
		types[i] = pl["PayloadType"].(string)
	}
	top := dict{
		"PayloadContent":      content,
		"PayloadDisplayName":  "Hale: " + r.p.Name + " " + display,
		"PayloadDescription":  "Managed by Hale for policy " + r.p.Name + ".",
		"PayloadIdentifier":   id,
		"PayloadOrganization": r.opts.Organization,
		"PayloadType":         "Configuration",
		"PayloadUUID":         u,
		"PayloadVersion":      1,
	}
	if r.platform == PlatformMacOS {
		top["PayloadScope"] = "System"
	}
	b, err := plist.MarshalIndent(top, "\t")
	if err != nil {
		return Profile{}, fmt.Errorf("encode %s profile: %w", kind, err)
	}
	prof := Profile{Identifier: id, UUID: u, Kind: kind, PayloadTypes: types, Bytes: b,
		SupervisedOnly: supervisedOnly, RequiresSupervision: requiresSupervision}
	if r.opts.Signer != nil {
		signed, err := r.opts.Signer.Sign(b)
		if err != nil {
			return Profile{}, fmt.Errorf("sign %s profile: %w", kind, err)
		}
		prof.Bytes, prof.Signed = signed, true
	}
	return prof, nil
}

func (r *renderer) passcode() (Profile, error) {
	pc := r.p.Passcode
	c := dict{}
	if pc.needsPasscode() {
		c["forcePIN"] = true
		c["allowSimple"] = false
	}
	if pc.MinLength > 0 {
		c["minLength"] = pc.MinLength
	}
	if pc.RequireAlphanumeric {
		c["requireAlphanumeric"] = true
	}
	if pc.MinComplexChars > 0 {
		c["minComplexChars"] = pc.MinComplexChars
	}
	if pc.MaxInactivityMinutes > 0 {
		m := pc.MaxInactivityMinutes
		if r.platform != PlatformMacOS {
			// iOS accepts at most 15 minutes; locking sooner is stricter, never weaker.
			m = min(m, 15)
		}
		c["maxInactivity"] = m
	}
	if pc.MaxGraceMinutes != nil {
		c["maxGracePeriod"] = *pc.MaxGraceMinutes
	}
	if pc.MaxFailedAttempts > 0 {
		c["maxFailedAttempts"] = pc.MaxFailedAttempts
	}
	if pc.MaxAgeDays > 0 {
		c["maxPINAgeInDays"] = pc.MaxAgeDays
	}
	if pc.History > 0 {
		c["pinHistory"] = pc.History
	}
	pl := r.payload(ProfilePasscode, PayloadTypePasscode, "Passcode", c)
	return r.profile(ProfilePasscode, "passcode", []dict{pl}, nil, false)
}

func (r *renderer) restrictions() (Profile, error) {
	c := dict{}
	var supervisedOnly []string
	for i := range restrictions {
		rs := &restrictions[i]
		v, set := rs.value(r.p)
		if !set || !rs.Platforms.has(r.platform) {
			continue
		}
		c[rs.Key] = v
		if rs.Supervised.has(r.platform) {
			supervisedOnly = append(supervisedOnly, rs.Key)
		}
	}
	pl := r.payload(ProfileRestrictions, PayloadTypeRestrictions, "Restrictions", c)
	return r.profile(ProfileRestrictions, "restrictions", []dict{pl}, supervisedOnly, false)
}

func (r *renderer) fileVault() (Profile, error) {
	if len(r.opts.EscrowCertificate) == 0 {
		return Profile{}, errors.New("FileVault needs a recovery key escrow certificate: set RenderOptions.EscrowCertificate (DER)")
	}
	if _, err := x509.ParseCertificate(r.opts.EscrowCertificate); err != nil {
		return Profile{}, fmt.Errorf("FileVault escrow certificate is not a DER X.509 certificate: %w", err)
	}
	cert := r.payload(ProfileFileVault, PayloadTypeCertificate, "FileVault recovery key escrow certificate", dict{
		"PayloadContent":             r.opts.EscrowCertificate,
		"PayloadCertificateFileName": "hale-filevault-escrow.cer",
	})
	fv := r.payload(ProfileFileVault, PayloadTypeFileVault, "FileVault", dict{
		"Enable":          "On",
		"Defer":           true,
		"UseRecoveryKey":  true,
		"ShowRecoveryKey": false,
		// Ask at the next login and do not let the user skip it.
		"DeferForceAtUserLoginMaxBypassAttempts": 0,
	})
	escrow := r.payload(ProfileFileVault, PayloadTypeEscrow, "FileVault recovery key escrow", dict{
		"Location":               r.opts.EscrowLocation,
		"EncryptCertPayloadUUID": cert["PayloadUUID"],
	})
	mcx := r.payload(ProfileFileVault, PayloadTypeMCX, "Keep FileVault on", dict{
		"dontAllowFDEDisable": true,
	})
	return r.profile(ProfileFileVault, "FileVault", []dict{cert, fv, escrow, mcx}, nil, false)
}

func (r *renderer) notifications() (Profile, error) {
	items := make([]any, 0, len(r.p.Notifications.Apps))
	for _, app := range r.p.Notifications.Apps {
		item := dict{
			"BundleIdentifier":     app.BundleID,
			"NotificationsEnabled": true,
		}
		if r.platform == PlatformMacOS {
			// macOS has no PreviewType; keeping the app off the lock screen is the equivalent.
			item["ShowInLockScreen"] = app.Previews == PreviewAlways
		} else {
			item["PreviewType"] = app.Previews.applePreviewType()
		}
		items = append(items, item)
	}
	pl := r.payload(ProfileNotifications, PayloadTypeNotifications, "Notifications", dict{
		"NotificationSettings": items,
	})
	var supervisedOnly []string
	needs := notificationsSupervised.has(r.platform)
	if needs {
		supervisedOnly = []string{PayloadTypeNotifications}
	}
	return r.profile(ProfileNotifications, "notifications", []dict{pl}, supervisedOnly, needs)
}
