package api

import "time"

// SecurityRequest is the body of POST /api/v1/devices/{id}/lock, .../lost-mode and .../wipe.
type SecurityRequest struct {
	// Reason is why, for the audit record (required, at most 500 characters).
	Reason string `json:"reason"`
	// Mode is full or selective (wipe only). Agents wipe selectively; Apple devices fully.
	Mode string `json:"mode,omitempty"`
	// Message and PhoneNumber are shown on a locked or lost device's screen.
	Message     string `json:"message,omitempty"`
	PhoneNumber string `json:"phone_number,omitempty"`
	// PIN is the 6-digit Find My PIN macOS requires for DeviceLock and EraseDevice; the server
	// makes one when a Mac's lock or erase carries none.
	PIN string `json:"pin,omitempty"`
	// PreserveDataPlan and DisallowProximitySetup are EraseDevice's options (iOS).
	PreserveDataPlan       bool `json:"preserve_data_plan,omitempty"`
	DisallowProximitySetup bool `json:"disallow_proximity_setup,omitempty"`
	// ObliterationBehavior is Default, DoNotObliterate, ObliterateWithWarning or Always (macOS).
	ObliterationBehavior string `json:"obliteration_behavior,omitempty"`
}

// SecurityAnswer is the 202 answer to lock, lost mode and wipe: the command and the state the
// device is now treated as, or the approval a wipe awaits under the two-person rule. A request
// repeated with the same Idempotency-Key gets the first answer again.
type SecurityAnswer struct {
	CommandID  string `json:"command_id,omitempty"`
	ApprovalID string `json:"approval_id,omitempty"`
	// ExpiresAt is when a held wipe's approval request lapses.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// State is the command's state, StatePendingApproval for a held wipe, or StateNotSent when
	// an approved wipe found the device already ended.
	State    string `json:"state"`
	DeviceID string `json:"device_id"`
	// DeviceState is what the device is now treated as: its state, or wipe_pending.
	DeviceState string `json:"device_state"`
	// Effect says what a wipe does to this device, for its enrollment type (a personal
	// device's wipe removes only its enrollment and managed data).
	Effect string `json:"effect,omitempty"`
}

// States of a SecurityAnswer besides its command's.
const (
	// StatePendingApproval is a wipe held for a second security token holder.
	StatePendingApproval = "pending_approval"
	// StateNotSent is an approved wipe not sent because the device was already wiped,
	// unenrolled or retired.
	StateNotSent = "not_sent"
)

// CommandPIN is GET /api/v1/devices/{id}/commands/{uuid}/pin: the PIN that unlocks a Mac after
// a lock or erase.
type CommandPIN struct {
	PIN       string `json:"pin"`
	CommandID string `json:"command_id"`
}
