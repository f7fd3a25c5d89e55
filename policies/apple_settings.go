package policies

import "strings"

// ProfileIdentifierPrefix starts the PayloadIdentifier of every profile Hale renders:
// ProfileIdentifierPrefix + policy name + "." + kind, e.g.
// "io.github.halemdm.policy.hipaa-texting.restrictions".
const ProfileIdentifierPrefix = "io.github.halemdm.policy."

// The profiles Hale renders per policy, one per area so that a profile an unsupervised device
// refuses does not take the others down with it.
const (
	ProfilePasscode      = "passcode"
	ProfileRestrictions  = "restrictions"
	ProfileFileVault     = "filevault"
	ProfileNotifications = "notifications"
)

// Apple payload types Hale renders.
const (
	PayloadTypePasscode      = "com.apple.mobiledevice.passwordpolicy"
	PayloadTypeRestrictions  = "com.apple.applicationaccess"
	PayloadTypeFileVault     = "com.apple.MCX.FileVault2"
	PayloadTypeEscrow        = "com.apple.security.FDERecoveryKeyEscrow"
	PayloadTypeCertificate   = "com.apple.security.pkcs1"
	PayloadTypeMCX           = "com.apple.MCX"
	PayloadTypeNotifications = "com.apple.notificationsettings"
)

// ProfileIdentifier returns the PayloadIdentifier of a policy's profile of the given kind.
func ProfileIdentifier(policyName, kind string) string {
	return ProfileIdentifierPrefix + policyName + "." + kind
}

// isProfileIdentifier is ProfileIdentifier(name, kind) == id without building the string, so
// evaluation does not allocate.
func isProfileIdentifier(id, name, kind string) bool {
	n := len(ProfileIdentifierPrefix)
	return len(id) == n+len(name)+1+len(kind) &&
		strings.HasPrefix(id, ProfileIdentifierPrefix) &&
		id[n:n+len(name)] == name && id[n+len(name)] == '.' &&
		strings.HasSuffix(id, kind)
}

// platformSet is a set of platforms as bits.
type platformSet uint8

func setOf(ps ...Platform) platformSet {
	var s platformSet
	for _, p := range ps {
		s |= platformBit(p)
	}
	return s
}

func platformBit(p Platform) platformSet {
	switch p {
	case PlatformIOS:
		return 1
	case PlatformIPadOS:
		return 2
	case PlatformMacOS:
		return 4
	case PlatformWindows:
		return 8
	case PlatformLinux:
		return 16
	case PlatformAndroid:
		return 32
	}
	return 0
}

func (s platformSet) has(p Platform) bool { return s&platformBit(p) != 0 }

var (
	appleMobile = setOf(PlatformIOS, PlatformIPadOS)
	appleAll    = setOf(PlatformIOS, PlatformIPadOS, PlatformMacOS)
	desktops    = setOf(PlatformMacOS, PlatformWindows, PlatformLinux)
)

// restriction is one com.apple.applicationaccess key a policy can set. The platform and
// supervision columns follow Apple's device-management schema
// (github.com/apple/device-management, mdm/profiles/com.apple.applicationaccess.yaml).
type restriction struct {
	Key string
	// Field is the policy field that sets the key, as validation errors name it.
	Field      string
	Platforms  platformSet
	Supervised platformSet // platforms where the key is ignored without supervision
	Code       string      // reason when the device reports the restriction not in effect
	// value returns the value to render and whether the policy sets it.
	value func(p *Policy) (v, set bool)
	// restrictive is the value that restricts; only that value is verified on devices.
	restrictive bool
}

func optBool(b *bool) (bool, bool) {
	if b == nil {
		return false, false
	}
	return *b, true
}

var restrictions = [...]restriction{
	{Key: "allowScreenShot", Field: "screenshots.allowed", Platforms: appleAll, Code: CodeScreenshotsAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.Screenshots == nil {
				return false, false
			}
			return optBool(p.Screenshots.Allowed)
		}},
	{Key: "allowRemoteScreenObservation", Field: "screenshots.screen_observation_allowed", Platforms: appleAll, Code: CodeScreenshotsAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.Screenshots == nil {
				return false, false
			}
			return optBool(p.Screenshots.ScreenObservationAllowed)
		}},
	{Key: "allowCloudBackup", Field: "backup.cloud_backup_allowed", Platforms: appleMobile, Code: CodeCloudBackupAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.Backup == nil {
				return false, false
			}
			return optBool(p.Backup.CloudBackupAllowed)
		}},
	{Key: "allowCloudDocumentSync", Field: "backup.cloud_document_sync_allowed", Platforms: appleAll, Supervised: appleMobile, Code: CodeCloudBackupAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.Backup == nil {
				return false, false
			}
			return optBool(p.Backup.CloudDocumentSyncAllowed)
		}},
	{Key: "allowCloudDesktopAndDocuments", Field: "backup.cloud_document_sync_allowed", Platforms: setOf(PlatformMacOS), Code: CodeCloudBackupAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.Backup == nil {
				return false, false
			}
			return optBool(p.Backup.CloudDocumentSyncAllowed)
		}},
	{Key: "forceEncryptedBackup", Field: "backup.require_encrypted_backup", Platforms: appleMobile, Code: CodeCloudBackupAllowed, restrictive: true,
		value: func(p *Policy) (bool, bool) {
			if p.Backup == nil || !p.Backup.RequireEncryptedBackup {
				return false, false
			}
			return true, true
		}},
	// data_sharing: the managed boundary. The open-in keys and requireManagedPasteboard also
	// apply under User Enrollment; allowAirDrop and allowDictation do not (Apple's schema,
	// userenrollment mode forbidden), and need supervision on iPhone and iPad.
	{Key: "allowOpenFromManagedToUnmanaged", Field: "data_sharing.managed_open_in", Platforms: appleMobile, Code: CodeDataSharingAllowed,
		value: func(p *Policy) (bool, bool) {
			return boundary(p, func(ds *DataSharingPolicy) *bool { return ds.ManagedOpenIn })
		}},
	{Key: "allowOpenFromUnmanagedToManaged", Field: "data_sharing.managed_open_in", Platforms: appleMobile, Code: CodeDataSharingAllowed,
		value: func(p *Policy) (bool, bool) {
			return boundary(p, func(ds *DataSharingPolicy) *bool { return ds.ManagedOpenIn })
		}},
	{Key: "requireManagedPasteboard", Field: "data_sharing.managed_pasteboard", Platforms: appleMobile, Code: CodeDataSharingAllowed, restrictive: true,
		value: func(p *Policy) (bool, bool) {
			if p.DataSharing == nil || p.DataSharing.ManagedPasteboard == nil {
				return false, false
			}
			return *p.DataSharing.ManagedPasteboard, true
		}},
	{Key: "forceAirDropUnmanaged", Field: "data_sharing.airdrop", Platforms: appleMobile, Code: CodeDataSharingAllowed, restrictive: true,
		value: func(p *Policy) (bool, bool) {
			if p.DataSharing == nil || p.DataSharing.AirDrop != AirDropManagedOnly {
				return false, false
			}
			return true, true
		}},
	{Key: "allowAirDrop", Field: "data_sharing.airdrop", Platforms: appleAll, Supervised: appleMobile, Code: CodeDataSharingAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.DataSharing == nil || p.DataSharing.AirDrop != AirDropBlocked {
				return false, false
			}
			return false, true
		}},
	{Key: "forceOnDeviceOnlyDictation", Field: "data_sharing.dictation", Platforms: appleAll, Code: CodeDataSharingAllowed, restrictive: true,
		value: func(p *Policy) (bool, bool) {
			if p.DataSharing == nil || p.DataSharing.Dictation != DictationOnDeviceOnly {
				return false, false
			}
			return true, true
		}},
	{Key: "allowDictation", Field: "data_sharing.dictation", Platforms: appleAll, Supervised: appleMobile, Code: CodeDataSharingAllowed,
		value: func(p *Policy) (bool, bool) {
			if p.DataSharing == nil || p.DataSharing.Dictation != DictationBlocked {
				return false, false
			}
			return false, true
		}},
	{Key: "allowLockScreenNotificationsView", Field: "notifications.lock_screen_view_allowed", Platforms: appleMobile, Code: CodeLockScreenPreviews,
		value: func(p *Policy) (bool, bool) {
			if p.Notifications == nil {
				return false, false
			}
			return optBool(p.Notifications.LockScreenViewAllowed)
		}},
}

// boundary is the value of an allowOpenFrom... key for a managed_open_in setting: true (the
// boundary holds) renders false; false renders true (open-in allowed, which is Apple's default).
func boundary(p *Policy, get func(*DataSharingPolicy) *bool) (bool, bool) {
	if p.DataSharing == nil {
		return false, false
	}
	b := get(p.DataSharing)
	if b == nil {
		return false, false
	}
	return !*b, true
}

// Whole payloads that need supervision somewhere.
var notificationsSupervised = appleMobile // com.apple.notificationsettings: supervised on iOS

// rendersPasscode reports whether the passcode section produces a passcode payload.
func (pc *PasscodePolicy) rendersPasscode() bool {
	return pc != nil && (pc.needsPasscode() || pc.MaxFailedAttempts > 0 || pc.History > 0 || pc.MaxGraceMinutes != nil)
}

// appleKinds reports which profiles a policy produces for an Apple platform. supervised says
// whether supervised-only profiles are expected to install.
type appleKinds struct {
	passcode, restrictions, fileVault, notifications bool
}

func expectedAppleProfiles(p *Policy, pl Platform, supervised bool) appleKinds {
	var k appleKinds
	if !appleAll.has(pl) {
		return k
	}
	k.passcode = p.Passcode.rendersPasscode()
	for i := range restrictions {
		r := &restrictions[i]
		if _, set := r.value(p); set && r.Platforms.has(pl) {
			k.restrictions = true
			break
		}
	}
	k.fileVault = pl == PlatformMacOS && p.Encryption != nil && p.Encryption.Required
	k.notifications = p.Notifications != nil && len(p.Notifications.Apps) > 0 &&
		(supervised || !notificationsSupervised.has(pl))
	return k
}

// SupervisedOnlySettings lists the settings of a policy that an unsupervised device on the
// given platform ignores or refuses: restriction keys and whole payload types.
func SupervisedOnlySettings(p *Policy, pl Platform) []string {
	var out []string
	for i := range restrictions {
		r := &restrictions[i]
		if _, set := r.value(p); set && r.Platforms.has(pl) && r.Supervised.has(pl) {
			out = append(out, r.Key)
		}
	}
	if p.Notifications != nil && len(p.Notifications.Apps) > 0 && notificationsSupervised.has(pl) {
		out = append(out, PayloadTypeNotifications)
	}
	return out
}
