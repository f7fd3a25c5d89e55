package policies

import "time"

// Platform names a device operating system family.
type Platform string

// The platforms Hale knows. Linux distributions are told apart by OSInfo.Distribution.
const (
	PlatformIOS     Platform = "ios"
	PlatformIPadOS  Platform = "ipados"
	PlatformMacOS   Platform = "macos"
	PlatformWindows Platform = "windows"
	PlatformLinux   Platform = "linux"
	PlatformAndroid Platform = "android"
)

// Provenance says how much a claim can be trusted: what the OS told the MDM server, what the
// agent observed about itself, what the organisation's messaging app reported under a valid
// App Attest or Play Integrity proof, or what hardware attestation proved.
type Provenance string

// The provenances of a claim, from least to most trustworthy when they disagree.
const (
	ProvenanceAgent    Provenance = "agent"
	ProvenanceApp      Provenance = "app"
	ProvenanceMDM      Provenance = "mdm"
	ProvenanceAttested Provenance = "attested"
)

// Claim is one observed fact about a device: its value, who observed it, and when.
// A nil *Claim means the fact is unknown, and a rule that needs an unknown fact fails closed.
type Claim[T any] struct {
	Value      T          `json:"value"`
	Source     Provenance `json:"source"`
	ObservedAt time.Time  `json:"observed_at"`
}

// Observe returns a claim of v from source at time at.
func Observe[T any](v T, source Provenance, at time.Time) *Claim[T] {
	return &Claim[T]{Value: v, Source: source, ObservedAt: at.UTC()}
}

// OSInfo describes the operating system a device runs.
type OSInfo struct {
	// Version is the marketing version ("17.4.1", "14.5", "10.0.22631", "24.04").
	Version string `json:"version"`
	// Build is the build identifier ("21E236"; on Windows "22631.3447" with the UBR).
	Build string `json:"build,omitempty"`
	// Distribution is the Linux os-release ID ("ubuntu", "debian", "fedora", "rhel").
	Distribution string `json:"distribution,omitempty"`
	// Kernel is the kernel release where the platform has a separate one (Linux).
	Kernel string `json:"kernel,omitempty"`
	// SecurityPatch is Android's security patch level, an ISO date ("2026-01-05").
	SecurityPatch string `json:"security_patch,omitempty"`
}

// InstalledProfile is one configuration profile reported present on an Apple device.
type InstalledProfile struct {
	Identifier string `json:"identifier"`
	UUID       string `json:"uuid"`
}

// PasswordRules are the OS's rules for new local passwords.
type PasswordRules struct {
	// Enforced is false when no password-quality module checks new passwords: then nothing
	// below is enforced.
	Enforced  bool `json:"enforced"`
	MinLength int  `json:"min_length"`
	// MinClasses is how many character classes (lower case, upper case, digits, others) a
	// password must mix; MinDigits, MinLetters and MinOther how many digits, letters and
	// non-alphanumeric characters it must hold.
	MinClasses int `json:"min_classes,omitempty"`
	MinDigits  int `json:"min_digits,omitempty"`
	MinLetters int `json:"min_letters,omitempty"`
	MinOther   int `json:"min_other,omitempty"`
}

// Satisfy reports whether rules enforce at least what pc asks of a passcode's content.
// Password age is not part of the rules, so a policy with max_age_days is never satisfied by
// them.
func (r PasswordRules) Satisfy(pc *PasscodePolicy) bool {
	switch {
	case !r.Enforced, r.MinLength < pc.MinLength, pc.MaxAgeDays > 0:
		return false
	case pc.RequireAlphanumeric && !r.alphanumeric():
		return false
	case r.MinOther < pc.MinComplexChars:
		return false
	}
	return true
}

// alphanumeric reports whether the rules force a letter and a digit into every password: all four
// classes, or a required digit with a required letter or with three classes (any three that
// include digits include a letter).
func (r PasswordRules) alphanumeric() bool {
	return r.MinClasses >= 4 || (r.MinDigits >= 1 && (r.MinLetters >= 1 || r.MinClasses >= 3))
}

// Posture is everything known about a device's security state. Agents build it from their
// collectors; the server builds it from Apple command results (SecurityInfo, DeviceInformation,
// ProfileList) and merges the two. Every field is optional: nil means unknown.
type Posture struct {
	Platform Platform `json:"platform"`
	// ReportedAt is when the newest report that fed this posture reached the server (or, on the
	// agent, when it was collected). Staleness is measured from it.
	ReportedAt time.Time `json:"reported_at"`

	OS         *Claim[OSInfo] `json:"os,omitempty"`
	Supervised *Claim[bool]   `json:"supervised,omitempty"`

	// DiskEncrypted is true when the system volume (FileVault, BitLocker, LUKS root, Apple data
	// protection) is encrypted. SwapEncrypted is reported separately on Linux.
	DiskEncrypted *Claim[bool] `json:"disk_encrypted,omitempty"`
	SwapEncrypted *Claim[bool] `json:"swap_encrypted,omitempty"`

	// PasscodePresent is a device passcode (Apple) or a password on every interactive local user
	// (agents). PasscodeCompliant is the OS's own word that it meets the installed policy.
	PasscodePresent   *Claim[bool] `json:"passcode_present,omitempty"`
	PasscodeCompliant *Claim[bool] `json:"passcode_compliant,omitempty"`
	// PasswordRules is what the OS enforces for every new local password (agents; on Linux
	// PAM's pam_pwquality). Agents cannot read a password to judge it, so where
	// PasscodeCompliant is unknown the evaluation judges the rules instead.
	PasswordRules *Claim[PasswordRules] `json:"password_rules,omitempty"`
	// ScreenLockEnabled and ScreenLockTimeout are what desktop agents read from the session
	// settings: the screen locks after ScreenLockTimeout of inactivity.
	ScreenLockEnabled *Claim[bool]     `json:"screen_lock_enabled,omitempty"`
	ScreenLockTimeout *Claim[Duration] `json:"screen_lock_timeout,omitempty"`

	// InstalledProfiles is the Apple ProfileList answer.
	InstalledProfiles *Claim[[]InstalledProfile] `json:"installed_profiles,omitempty"`
	// Restrictions is the Apple Restrictions command answer: the effective value of each
	// boolean restriction in force on the device (GlobalRestrictions restrictedBool), keyed by
	// payload key ("allowScreenShot"). A key that is absent has Apple's default value.
	Restrictions *Claim[map[string]bool] `json:"restrictions,omitempty"`

	// Declarations is what a device on declarative management reports of the declarations it
	// processed (status item management.declarations): an active, valid declaration of the
	// policy's is evidence its settings are in force, as an installed profile is.
	Declarations *Claim[[]DeclarationState] `json:"declarations,omitempty"`
	// NonCompliance lists the policy settings the device reports not in force (the Android
	// Management API's nonComplianceDetails, by settingName); empty means the whole policy
	// applies.
	NonCompliance *Claim[[]string] `json:"noncompliance,omitempty"`
	// OSUpdate is the software update a device on declarative management reports
	// (softwareupdate.install-state and .pending-version): where an os.update_deadline stands.
	// No rule judges it; the minimum OS rule judges what is installed.
	OSUpdate *Claim[OSUpdateStatus] `json:"os_update,omitempty"`

	// Integrity.
	Jailbroken       *Claim[bool]   `json:"jailbroken,omitempty"` // jailbroken or rooted
	SIPEnabled       *Claim[bool]   `json:"sip_enabled,omitempty"`
	SecureBoot       *Claim[bool]   `json:"secure_boot,omitempty"`
	AgentTampered    *Claim[bool]   `json:"agent_tampered,omitempty"`
	FirewallEnabled  *Claim[bool]   `json:"firewall_enabled,omitempty"`
	KernelLockdown   *Claim[string] `json:"kernel_lockdown,omitempty"` // none, integrity, confidentiality
	KernelTainted    *Claim[bool]   `json:"kernel_tainted,omitempty"`
	PendingSecurity  *Claim[int]    `json:"pending_security_updates,omitempty"`
	RebootRequired   *Claim[bool]   `json:"reboot_required,omitempty"`
	GatekeeperActive *Claim[bool]   `json:"gatekeeper_enabled,omitempty"`

	// The organisation's messaging app (mobile/), on a device it is bound to. AppAttested is
	// that an app instance registered with a valid App Attest or Play Integrity proof and is
	// reporting (provenance attested); ScreenCaptured is the app's word that the screen is
	// being recorded, mirrored or captured (provenance app).
	AppAttested    *Claim[bool] `json:"app_attested,omitempty"`
	ScreenCaptured *Claim[bool] `json:"screen_captured,omitempty"`
}

// DeclarationState is one declaration a device reported processing.
type DeclarationState struct {
	Identifier  string `json:"identifier"`
	ServerToken string `json:"server_token"`
	// Category is activation, configuration, asset or management.
	Category string `json:"category"`
	Active   bool   `json:"active"`
	// Valid is valid, invalid or unknown.
	Valid string `json:"valid"`
	// Reasons are the error codes the device gave ("Error.ConfigurationCannotBeApplied").
	Reasons []string `json:"reasons,omitempty"`
}

// OSUpdateStatus is a device's own account of its software update.
type OSUpdateStatus struct {
	// InstallState is none, downloading, prepared, installing or failed.
	InstallState string `json:"install_state"`
	// PendingVersion and PendingBuild are the update waiting to install, if any.
	PendingVersion string `json:"pending_version,omitempty"`
	PendingBuild   string `json:"pending_build,omitempty"`
}

// Failed reports whether the device refused the declaration or did not activate it.
func (d DeclarationState) Failed() bool { return d.Valid == "invalid" || !d.Active }

// Duration is a time.Duration that reads and writes JSON and YAML as a Go duration string
// ("15m", "24h").
type Duration time.Duration

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Reason is one cause of noncompliance: a stable code a program can act on and a detail a
// person can read.
type Reason struct {
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
}

// Verdict is the result of evaluating a posture against a policy at an instant.
type Verdict struct {
	Compliant   bool      `json:"compliant"`
	Reasons     []Reason  `json:"reasons"`
	EvaluatedAt time.Time `json:"evaluated_at"`
	// NoncompliantSince is when the device first became noncompliant in its current run of
	// noncompliance; GraceUntil is when that run stops being tolerated. Both are zero while the
	// device is compliant.
	NoncompliantSince time.Time `json:"noncompliant_since,omitzero"`
	GraceUntil        time.Time `json:"grace_until,omitzero"`
	// PolicyName and PolicyVersion identify what was evaluated.
	PolicyName    string `json:"policy,omitempty"`
	PolicyVersion int    `json:"policy_version,omitempty"`
}

// InGrace reports whether a noncompliant device is still tolerated at now.
func (v Verdict) InGrace(now time.Time) bool {
	return !v.Compliant && !v.GraceUntil.IsZero() && now.Before(v.GraceUntil)
}

// Allowed reports whether the verdict lets the device open a session at now: compliant, or
// noncompliant but within grace.
func (v Verdict) Allowed(now time.Time) bool { return v.Compliant || v.InGrace(now) }
