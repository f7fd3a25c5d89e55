package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// AgentPolicy is the part of a policy an mdmagent acts on, for its own platform: how often to
// report, what its selective wipe removes, and what the server will check so the agent can
// collect those facts and warn its user. The server serves it at GET /agent/v1/policy with
// ETag; the agent polls with If-None-Match.
type AgentPolicy struct {
	Policy   string   `json:"policy"`
	Version  int      `json:"version"`
	Platform Platform `json:"platform"`

	// ReportInterval is how often to report; ReportMaxAge is how old a report may be before
	// the server treats the device as stale.
	ReportInterval Duration `json:"report_interval"`
	ReportMaxAge   Duration `json:"report_max_age"`

	// ManagedData is what a selective wipe removes on this platform.
	ManagedData []string `json:"managed_data,omitempty"`

	// ScreenLock is what the server expects of the screen lock.
	ScreenLock ScreenLockExpectation `json:"screen_lock"`
	// Passcode is the password policy the agent compares the local one with (passcode_compliant).
	Passcode *PasscodePolicy `json:"passcode,omitempty"`

	EncryptionRequired bool             `json:"encryption_required,omitempty"`
	Integrity          *IntegrityPolicy `json:"integrity,omitempty"`
	// MinOSVersion is the platform's minimum OS version; on Linux MinOSVersions maps
	// distribution IDs to minimums instead.
	MinOSVersion  string            `json:"min_os_version,omitempty"`
	MinOSVersions map[string]string `json:"min_os_versions,omitempty"`
}

// ScreenLockExpectation is the screen lock the server checks on desktops.
type ScreenLockExpectation struct {
	Required bool `json:"required"`
	// MaxIdle is the longest idle time before locking; zero when the policy sets none.
	MaxIdle Duration `json:"max_idle,omitempty"`
}

// ForAgent returns the agent's view of the policy on a platform. It shares no memory with the
// policy.
func (p *Policy) ForAgent(platform Platform) AgentPolicy {
	a := AgentPolicy{
		Policy:         p.Name,
		Version:        p.Version,
		Platform:       platform,
		ReportInterval: Duration(p.ReportInterval()),
		ReportMaxAge:   Duration(p.ReportMaxAge()),
		ManagedData:    slices.Clone(p.ManagedData[platform]),
	}
	if pc := p.Passcode; pc != nil && pc.needsPasscode() {
		cp := *pc
		a.Passcode = &cp
		a.ScreenLock.Required = desktops.has(platform)
		if a.ScreenLock.Required && pc.MaxInactivityMinutes > 0 {
			a.ScreenLock.MaxIdle = Duration(time.Duration(pc.MaxInactivityMinutes) * time.Minute)
		}
	}
	a.EncryptionRequired = p.Encryption != nil && p.Encryption.Required
	if p.Integrity != nil {
		ip := *p.Integrity
		a.Integrity = &ip
	}
	if p.OS != nil {
		if platform == PlatformLinux {
			a.MinOSVersions = maps.Clone(p.OS.Linux)
		} else {
			a.MinOSVersion, _, _ = p.OS.Minimum(platform, "")
		}
	}
	return a
}

// ETag returns a strong HTTP entity tag for the agent policy: the quoted hex SHA-256 of its
// JSON, which is deterministic (fixed field order, sorted map keys).
func (a AgentPolicy) ETag() string {
	b, err := json.Marshal(a)
	if err != nil {
		panic("policies: agent policy encoding failed: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}
