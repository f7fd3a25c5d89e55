package applesim

import (
	"bytes"
	"slices"
)

// Platform is the operating system family a simulated device runs.
type Platform string

// Platforms the simulator models. The zero value is treated as iOS.
const (
	// IOS is an iPhone or iPad.
	IOS Platform = "iOS"
	// MacOS is a Mac.
	MacOS Platform = "macOS"
)

// PasscodePolicyPayloadType is the payload type of a passcode policy
// inside a configuration profile. Installed policies decide
// PasscodeCompliantWithProfiles.
const PasscodePolicyPayloadType = "com.apple.mobiledevice.passwordpolicy"

// State is what a simulated device knows about itself and reports to
// the MDM server. Read it with [Device.State] (a deep copy) and change
// it with [Device.Update] or the Set methods, never by keeping a
// pointer into a device.
type State struct {
	// Platform selects iOS or macOS answers (the zero value means iOS).
	Platform Platform

	// Device facts reported by DeviceInformation and Authenticate.
	DeviceName   string
	OSVersion    string // e.g. "17.5.1"
	BuildVersion string // e.g. "21F90"
	ProductName  string // e.g. "iPhone15,2" or "Mac14,2"
	Model        string // e.g. "MQ9X3LL/A"
	ModelName    string // e.g. "iPhone" or "MacBook Air"
	Supervised   bool

	// ActivationLockEnabled and CloudBackupEnabled answer the
	// IsActivationLockEnabled and IsCloudBackupEnabled queries.
	ActivationLockEnabled bool
	CloudBackupEnabled    bool

	// The user's passcode (iOS). PasscodeLength, PasscodeAlphanumeric
	// and PasscodeSimple describe it for checking installed passcode
	// policies; they mean nothing while PasscodePresent is false.
	PasscodePresent      bool
	PasscodeLength       int
	PasscodeAlphanumeric bool
	PasscodeSimple       bool
	// AccountPasscodeNoncompliant reports that a non-profile source
	// (an Exchange account) demands a passcode the user does not meet;
	// it makes PasscodeCompliant false but not
	// PasscodeCompliantWithProfiles.
	AccountPasscodeNoncompliant bool

	// HardwareEncryptionCaps is 1 (block), 2 (file) or 3 (both) on iOS.
	// Data protection needs 3 and a passcode.
	HardwareEncryptionCaps int

	// macOS security facts reported by SecurityInfo.
	FileVaultEnabled             bool
	FileVaultPersonalRecoveryKey bool
	SIPEnabled                   bool
	FirewallEnabled              bool
	AuthenticatedRootVolume      bool

	// Enrollment facts reported in SecurityInfo's ManagementStatus.
	EnrolledViaDEP         bool
	UserApprovedEnrollment bool

	// Profiles installed by InstallProfile, in installation order.
	Profiles []Profile

	// Locked is set by DeviceLock and cleared by [Device.Unlock] (the
	// user unlocking). LockPIN and LockMessage keep what the command
	// carried (the PIN is what a Mac asks for at the Find My lock).
	Locked      bool
	LockPIN     string
	LockMessage string

	// Lost Mode, set by EnableLostMode (supervised iOS only).
	LostMode         bool
	LostModeMessage  string
	LostModePhone    string
	LostModeFootnote string

	// Erased is set once the device has acknowledged EraseDevice; an
	// erased device no longer talks to the server.
	Erased bool
	// ErasePIN is the PIN an EraseDevice command carried (macOS).
	ErasePIN string
	// ManagedVolumeRemoved is set when a user enrollment ended: the
	// managed volume and everything on it are gone, the person's data
	// (everything else in this State) is not.
	ManagedVolumeRemoved bool

	// DDM is the device's declarative management: its declarations and what it reports.
	DDM DDMState

	// ManagedApps are the bundle IDs of the apps MDM installed (InstallApplication), which alone
	// take a managed app configuration. AppConfigurations holds what the Settings command's
	// ApplicationConfiguration item set for each, as the app reads it from UserDefaults under
	// com.apple.configuration.managed.
	ManagedApps       []string
	AppConfigurations map[string]map[string]any

	// NotNow makes the device answer NotNow to every command Apple
	// devices do not run while locked or busy (see [RunsWhileLocked]),
	// as a passcode-locked iPhone does.
	NotNow bool
}

// Profile is one installed configuration profile.
type Profile struct {
	Identifier        string
	UUID              string
	DisplayName       string
	Description       string
	Organization      string
	Version           int
	RemovalDisallowed bool
	// Signed reports that the profile arrived CMS-signed;
	// SignerCertificates holds the DER signer chain, signer first.
	Signed             bool
	SignerCertificates [][]byte
	// Payloads are the profile's PayloadContent entries.
	Payloads []Payload
	// Raw is the profile's property list (the CMS content if signed).
	Raw []byte
}

// Payload is one entry of a profile's PayloadContent.
type Payload struct {
	Type        string
	Identifier  string
	UUID        string
	DisplayName string
	Version     int
	// Content is the whole payload dictionary as parsed (strings,
	// bools, int64/uint64, float64, []byte, time.Time, []any,
	// map[string]any), so a test can check exactly what was installed.
	Content map[string]any
}

// PayloadsOfType returns the payloads of type typ across all installed
// profiles.
func (s State) PayloadsOfType(typ string) []Payload {
	var out []Payload
	for _, p := range s.Profiles {
		for _, pl := range p.Payloads {
			if pl.Type == typ {
				out = append(out, pl)
			}
		}
	}
	return out
}

// Profile returns the installed profile with identifier id.
func (s State) Profile(id string) (Profile, bool) {
	for _, p := range s.Profiles {
		if p.Identifier == id {
			return p, true
		}
	}
	return Profile{}, false
}

// PasscodeCompliantWithProfiles reports whether the passcode satisfies
// every installed passcode policy payload. A policy with forcePIN,
// minLength, requireAlphanumeric, minComplexChars or allowSimple=false
// demands a passcode; minLength, requireAlphanumeric and allowSimple
// are then checked against the passcode. Other keys (age, history,
// auto-lock) are not modelled.
func (s State) PasscodeCompliantWithProfiles() bool {
	for _, pl := range s.PayloadsOfType(PasscodePolicyPayloadType) {
		c := pl.Content
		forcePIN, _ := getBool(c, "forcePIN")
		minLength, _ := getInt(c, "minLength")
		alnum, _ := getBool(c, "requireAlphanumeric")
		minComplex, _ := getInt(c, "minComplexChars")
		allowSimple, hasAllowSimple := getBool(c, "allowSimple")
		requires := forcePIN || minLength > 0 || alnum || minComplex > 0 || (hasAllowSimple && !allowSimple)
		if !requires {
			continue
		}
		if !s.PasscodePresent ||
			int64(s.PasscodeLength) < minLength ||
			(alnum && !s.PasscodeAlphanumeric) ||
			(hasAllowSimple && !allowSimple && s.PasscodeSimple) {
			return false
		}
	}
	return true
}

// PasscodeCompliant reports the SecurityInfo PasscodeCompliant value
// (and the passcode.is-compliant status item): compliant with profiles,
// with active passcode.settings declarations and with every other
// source (accounts).
func (s State) PasscodeCompliant() bool {
	return s.PasscodeCompliantWithProfiles() && s.passcodeCompliantWithDeclarations() && !s.AccountPasscodeNoncompliant
}

func (s State) platform() Platform {
	if s.Platform == "" {
		return IOS
	}
	return s.Platform
}

// clone returns a deep copy of s.
func (s State) clone() State {
	s.DDM = s.DDM.clone()
	s.ManagedApps = slices.Clone(s.ManagedApps)
	if s.AppConfigurations != nil {
		configs := make(map[string]map[string]any, len(s.AppConfigurations))
		for k, v := range s.AppConfigurations {
			configs[k] = copyDict(v)
		}
		s.AppConfigurations = configs
	}
	s.Profiles = slices.Clone(s.Profiles)
	for i := range s.Profiles {
		s.Profiles[i] = s.Profiles[i].clone()
	}
	return s
}

func (p Profile) clone() Profile {
	p.Raw = bytes.Clone(p.Raw)
	p.SignerCertificates = slices.Clone(p.SignerCertificates)
	for i, c := range p.SignerCertificates {
		p.SignerCertificates[i] = bytes.Clone(c)
	}
	p.Payloads = slices.Clone(p.Payloads)
	for i := range p.Payloads {
		p.Payloads[i].Content = copyDict(p.Payloads[i].Content)
	}
	return p
}

// IOSState returns the state of a typical supervised, passcode-protected,
// compliant iPhone. Start from it and change what a test needs.
func IOSState() State {
	return State{
		Platform:               IOS,
		DeviceName:             "Clinician iPhone",
		OSVersion:              "17.5.1",
		BuildVersion:           "21F90",
		ProductName:            "iPhone15,2",
		Model:                  "MQ9X3LL/A",
		ModelName:              "iPhone",
		Supervised:             true,
		ActivationLockEnabled:  true,
		PasscodePresent:        true,
		PasscodeLength:         6,
		HardwareEncryptionCaps: 3,
	}
}

// MacOSState returns the state of a typical Mac with FileVault, SIP and
// the firewall on. Start from it and change what a test needs.
func MacOSState() State {
	return State{
		Platform:                     MacOS,
		DeviceName:                   "Clinic MacBook Air",
		OSVersion:                    "14.5",
		BuildVersion:                 "23F79",
		ProductName:                  "Mac14,2",
		Model:                        "MLY33LL/A",
		ModelName:                    "MacBook Air",
		FileVaultEnabled:             true,
		FileVaultPersonalRecoveryKey: true,
		SIPEnabled:                   true,
		FirewallEnabled:              true,
		AuthenticatedRootVolume:      true,
		UserApprovedEnrollment:       true,
	}
}
