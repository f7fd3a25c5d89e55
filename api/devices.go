package api

import (
	"time"

	"github.com/halemdm/hale/policies"
)

// Device is a device's inventory record as the admin API shows it: an entry of GET
// /api/v1/devices, and the answer to DELETE /api/v1/devices/{id}.
type Device struct {
	ID string `json:"id"`
	// Platform is apple (MDM) or agent (mdmagent).
	Platform string `json:"platform"`
	// OS is ios, ipados, macos, windows or linux; empty until known.
	OS     string `json:"os,omitempty"`
	Owner  string `json:"owner"`
	Group  string `json:"group"`
	Serial string `json:"serial,omitempty"`
	UDID   string `json:"udid,omitempty"`
	// EnrollmentID is nanomdm's enrollment ID (Apple devices).
	EnrollmentID string    `json:"enrollment_id,omitempty"`
	Hostname     string    `json:"hostname,omitempty"`
	EnrolledAt   time.Time `json:"enrolled_at"`
	LastSeen     time.Time `json:"last_seen,omitzero"`
	// CertSerials are the serials (lower-case hex) of every certificate issued to the device,
	// CertSHA256 their SHA-256 fingerprints.
	CertSerials []string `json:"cert_serials,omitempty"`
	CertSHA256  []string `json:"cert_sha256,omitempty"`
	// State is active, locked, lost, wiped, unenrolled or retired.
	State          string    `json:"state"`
	StateChangedAt time.Time `json:"state_changed_at"`
	// Enrollment is the ID of the enrollment the device used.
	Enrollment string `json:"enrollment,omitempty"`
	// UserEnrollment: a personal device (account-driven User Enrollment); its wipe removes
	// the enrollment and the managed data, never the person's own.
	UserEnrollment bool `json:"user_enrollment,omitempty"`
	// Wipe is the device's unfinished wipe, absent when it has none.
	Wipe *DeviceWipe `json:"wipe,omitempty"`
	// AgentVersion is the version mdmagent last reported (agents only). GET
	// /api/v1/devices?agent_older_than=v1.4.0 lists the agents older than a version, and those
	// that never reported one.
	AgentVersion string `json:"agent_version,omitempty"`
}

// DeviceWipe is a device's unfinished wipe: ordered and not yet answered (pending), or answered
// having left managed data behind (incomplete). Either denies the device access.
type DeviceWipe struct {
	CommandID string `json:"command_id"`
	// State is pending or incomplete.
	State string `json:"state"`
}

// Devices is a page of GET /api/v1/devices?state=&group=&owner=&cursor=&limit=.
type Devices struct {
	Devices []Device `json:"devices"`
	// NextCursor is passed unchanged as cursor for the next page; empty on the last one.
	NextCursor string `json:"next_cursor"`
}

// DeviceDetail is GET /api/v1/devices/{id}: the record, the device's compliance verdict (null
// until it was first evaluated) and its posture with the provenance of every claim (null until
// it reported). The access decision is GET /api/v1/devices/{id}/access, package posture's
// Decision.
type DeviceDetail struct {
	Device
	Verdict *policies.Verdict `json:"verdict"`
	Posture *policies.Posture `json:"posture"`
}
