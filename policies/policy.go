package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Defaults used when a policy leaves a setting out.
const (
	// DefaultReportMaxAge is how old the newest report may be when reporting.max_age is unset.
	DefaultReportMaxAge = 24 * time.Hour
	// MaxPolicySize bounds a policy document; larger documents are refused before parsing.
	MaxPolicySize = 256 << 10
)

// Policy is a validated compliance policy. Build one with Parse; a Policy is not meant to be
// changed after parsing except for Name and Version, which the server's store assigns.
//
// A nil section means the policy does not manage that area. Within a section, a nil *bool means
// "not managed" and an explicit false restricts.
type Policy struct {
	// Name and Version identify the policy. The store assigns them; they are not part of the
	// policy's content and so not part of Canonical.
	Name    string `json:"-"`
	Version int    `json:"-"`

	Description   string              `json:"description,omitempty"`
	Passcode      *PasscodePolicy     `json:"passcode,omitempty"`
	Encryption    *EncryptionPolicy   `json:"encryption,omitempty"`
	Screenshots   *ScreenshotPolicy   `json:"screenshots,omitempty"`
	Backup        *BackupPolicy       `json:"backup,omitempty"`
	Notifications *NotificationPolicy `json:"notifications,omitempty"`
	DataSharing   *DataSharingPolicy  `json:"data_sharing,omitempty"`
	OS            *OSPolicy           `json:"os,omitempty"`
	Integrity     *IntegrityPolicy    `json:"integrity,omitempty"`
	Reporting     *ReportingPolicy    `json:"reporting,omitempty"`
	Grace         *GracePolicy        `json:"grace,omitempty"`
	// BreakGlass is the emergency access procedure; nil: none.
	BreakGlass *BreakGlassPolicy `json:"break_glass,omitempty"`
	// ManagedData lists, per desktop platform, the paths an agent's selective wipe removes.
	// Paths are sorted. "~/" means every local user's home directory.
	ManagedData map[Platform][]string `json:"managed_data,omitempty"`
}

// PasscodePolicy is the device passcode (Apple) or local account password (desktops) and
// screen lock requirement. Zero fields are not enforced.
type PasscodePolicy struct {
	Required            bool `json:"required,omitempty"`
	MinLength           int  `json:"min_length,omitempty"`
	RequireAlphanumeric bool `json:"require_alphanumeric,omitempty"`
	MinComplexChars     int  `json:"min_complex_chars,omitempty"`
	// MaxInactivityMinutes is the longest idle time before the screen locks.
	MaxInactivityMinutes int `json:"max_inactivity_minutes,omitempty"`
	// MaxGraceMinutes is how long after locking the device may be unlocked without the
	// passcode; nil leaves it to the user, 0 demands the passcode immediately.
	MaxGraceMinutes   *int `json:"max_grace_minutes,omitempty"`
	MaxFailedAttempts int  `json:"max_failed_attempts,omitempty"`
	MaxAgeDays        int  `json:"max_age_days,omitempty"`
	History           int  `json:"history,omitempty"`
}

// needsPasscode reports whether any setting implies a passcode must exist.
func (pc *PasscodePolicy) needsPasscode() bool {
	return pc.Required || pc.hasComplexity() || pc.MaxInactivityMinutes > 0
}

// hasComplexity reports whether the policy constrains the current passcode itself, so that the
// OS's "passcode is compliant" answer matters.
func (pc *PasscodePolicy) hasComplexity() bool {
	return pc.MinLength > 0 || pc.RequireAlphanumeric || pc.MinComplexChars > 0 || pc.MaxAgeDays > 0
}

// EncryptionPolicy is the disk encryption requirement (FileVault, BitLocker, LUKS, Apple data
// protection; on Linux swap too).
type EncryptionPolicy struct {
	Required bool `json:"required,omitempty"`
}

// ScreenshotPolicy controls screenshots, screen recording and remote screen observation.
type ScreenshotPolicy struct {
	// Allowed covers screenshots and screen recording (Apple allowScreenShot).
	Allowed *bool `json:"allowed,omitempty"`
	// ScreenObservationAllowed covers remote observation by Classroom (Apple
	// allowRemoteScreenObservation).
	ScreenObservationAllowed *bool `json:"screen_observation_allowed,omitempty"`
}

// BackupPolicy controls cloud backup and sync of device data.
type BackupPolicy struct {
	CloudBackupAllowed       *bool `json:"cloud_backup_allowed,omitempty"`
	CloudDocumentSyncAllowed *bool `json:"cloud_document_sync_allowed,omitempty"`
	RequireEncryptedBackup   bool  `json:"require_encrypted_backup,omitempty"`
}

// PreviewType says when a notification's content may be shown.
type PreviewType string

// The preview types, in Apple's PreviewType terms: always 0, when unlocked 1, never 2.
const (
	PreviewAlways       PreviewType = "always"
	PreviewWhenUnlocked PreviewType = "when_unlocked"
	PreviewNever        PreviewType = "never"
)

// applePreviewType is the NotificationSettings PreviewType value.
func (t PreviewType) applePreviewType() int {
	switch t {
	case PreviewAlways:
		return 0
	case PreviewWhenUnlocked:
		return 1
	default:
		return 2
	}
}

// NotificationPolicy controls what the lock screen shows.
type NotificationPolicy struct {
	// LockScreenViewAllowed is whether the lock screen may show notification history (Apple
	// allowLockScreenNotificationsView).
	LockScreenViewAllowed *bool `json:"lock_screen_view_allowed,omitempty"`
	// Apps sets notification previews per app, sorted by bundle ID.
	Apps []AppNotification `json:"apps,omitempty"`
}

// AppNotification is the notification preview setting of one app.
type AppNotification struct {
	BundleID string      `json:"bundle_id"`
	Previews PreviewType `json:"previews"`
}

// OSPolicy holds minimum OS versions per platform. An empty version is not enforced.
type OSPolicy struct {
	IOS     string `json:"ios,omitempty"`
	IPadOS  string `json:"ipados,omitempty"`
	MacOS   string `json:"macos,omitempty"`
	Windows string `json:"windows,omitempty"`
	// Android is the minimum Android version ("14"); AndroidSecurityPatch the oldest security
	// patch level accepted, an ISO date ("2026-01-01").
	Android              string `json:"android,omitempty"`
	AndroidSecurityPatch string `json:"android_security_patch,omitempty"`
	// Linux maps an os-release ID ("ubuntu") to its minimum VERSION_ID ("22.04"). When it is
	// not empty, a Linux device running a distribution it does not list is noncompliant.
	Linux map[string]string `json:"linux,omitempty"`
	// UpdateDeadline names, per Apple platform, a release to install by a deadline (Apple
	// devices on declarative management enforce it themselves).
	UpdateDeadline map[Platform]OSUpdate `json:"update_deadline,omitempty"`
}

// Minimum returns the minimum version for a platform (and, on Linux, distribution) and whether
// the policy sets one. listed is false on Linux when the policy names distributions but not
// this one.
func (o *OSPolicy) Minimum(platform Platform, distribution string) (min string, enforced, listed bool) {
	if o == nil {
		return "", false, true
	}
	switch platform {
	case PlatformIOS:
		return o.IOS, o.IOS != "", true
	case PlatformIPadOS:
		return o.IPadOS, o.IPadOS != "", true
	case PlatformMacOS:
		return o.MacOS, o.MacOS != "", true
	case PlatformWindows:
		return o.Windows, o.Windows != "", true
	case PlatformAndroid:
		return o.Android, o.Android != "", true
	case PlatformLinux:
		if len(o.Linux) == 0 {
			return "", false, true
		}
		v, ok := o.Linux[distribution]
		return v, ok, ok
	}
	return "", false, true
}

// JailbreakEvidence says what block_jailbroken takes as grounds to deny a device.
type JailbreakEvidence string

// The jailbreak evidence choices. The empty value means JailbreakObserved; Parse stores
// "observed" as empty, so both spellings have one canonical form.
const (
	// JailbreakObserved denies a device that a source reported jailbroken or rooted. A device
	// about which no source reported is not denied for it: on iOS and iPadOS nothing Hale has
	// today can tell, and a rule nothing can observe would deny every such device.
	JailbreakObserved JailbreakEvidence = "observed"
	// JailbreakRequired also denies a device about which no source has reported (fail closed),
	// which only a platform with a source that reports jailbreak can ever satisfy; see
	// CheckObservable.
	JailbreakRequired JailbreakEvidence = "required"
)

// IntegrityPolicy holds device integrity requirements.
type IntegrityPolicy struct {
	// BlockJailbroken denies jailbroken or rooted devices, on the evidence JailbreakEvidence
	// names.
	BlockJailbroken bool `json:"block_jailbroken,omitempty"`
	// JailbreakEvidence is JailbreakRequired or empty (JailbreakObserved).
	JailbreakEvidence JailbreakEvidence `json:"jailbreak_evidence,omitempty"`
	// RequireSIP demands System Integrity Protection (macOS).
	RequireSIP bool `json:"require_sip,omitempty"`
	// RequireSecureBoot demands secure boot (desktops).
	RequireSecureBoot bool `json:"require_secure_boot,omitempty"`
	// BlockAgentTampering denies devices whose agent reports tampering (desktops).
	BlockAgentTampering bool `json:"block_agent_tampering,omitempty"`
	// RequireAppAttestation demands, on iPhones and iPads, an instance of the organisation's
	// messaging app registered with a valid App Attest (or Play Integrity) proof that reported
	// within reporting.max_age. It also makes the app a source for the satisfiability check:
	// its jailbreak, passcode and screen-capture claims count there.
	RequireAppAttestation bool `json:"require_app_attestation,omitempty"`
}

// ReportingPolicy says how fresh a device's report must be.
type ReportingPolicy struct {
	// MaxAge is how old the newest report (and every claim a rule uses) may be.
	MaxAge Duration `json:"max_age,omitempty"`
	// Interval is how often agents report; by default a third of MaxAge, at most one hour.
	Interval Duration `json:"interval,omitempty"`
}

// GracePolicy says how long a device may stay noncompliant before it is denied.
type GracePolicy struct {
	Period Duration `json:"period,omitempty"`
	// NoGraceFor lists reason codes that deny at once. no_report, jailbroken and
	// agent_tampered never get grace whatever the policy says.
	NoGraceFor []string `json:"no_grace_for,omitempty"`
	// WarnBefore is how long before grace ends the device's user and the backends are warned
	// (besides when grace begins); zero: only when it begins.
	WarnBefore Duration `json:"warn_before,omitempty"`
}

// ReportMaxAge returns the effective report age limit.
func (p *Policy) ReportMaxAge() time.Duration {
	if p.Reporting != nil && p.Reporting.MaxAge > 0 {
		return time.Duration(p.Reporting.MaxAge)
	}
	return DefaultReportMaxAge
}

// ReportInterval returns the effective agent reporting interval: the configured one, or a third
// of the report age limit capped at one hour, so that two reports may be lost before the device
// turns stale.
func (p *Policy) ReportInterval() time.Duration {
	if p.Reporting != nil && p.Reporting.Interval > 0 {
		return time.Duration(p.Reporting.Interval)
	}
	return min(p.ReportMaxAge()/3, time.Hour)
}

// GracePeriod returns how long noncompliance is tolerated; zero denies at once.
func (p *Policy) GracePeriod() time.Duration {
	if p.Grace == nil {
		return 0
	}
	return time.Duration(p.Grace.Period)
}

// Canonical returns the policy's content as deterministic JSON: fixed field order, sorted map
// keys, no insignificant whitespace; Parse also sorts the lists whose order means nothing
// (apps, paths, codes). Equal content gives equal bytes, so it is the input for hashes and
// ETags. Name and Version are identity, not content, and are left out. Canonical JSON parses
// back to an equal policy.
func (p *Policy) Canonical() []byte {
	b, err := json.Marshal(p)
	if err != nil {
		// Every field is a plain value json always encodes; reaching this is a programming error.
		panic("policies: canonical encoding failed: " + err.Error())
	}
	return b
}

// Hash returns the hex SHA-256 of the canonical JSON.
func (p *Policy) Hash() string {
	sum := sha256.Sum256(p.Canonical())
	return hex.EncodeToString(sum[:])
}
