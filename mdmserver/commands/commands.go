// Package commands tracks the Apple MDM commands Hale sends: it enqueues them in nanomdm and
// pushes the device, records each command's state (queued, pushed, acknowledged, error, not-now,
// expired), keeps every result the device reports, parsed, per device and command UUID, and
// keeps the sealed PINs of lock and erase commands.
//
// Results arrive through Hook, a decorator that wraps nanomdm's check-in and command service the
// way nanomdm's own certauth does: it records the result, then hands the request on.
//
// What is stored is behind a Repository (repository.go); the rules over it (a result's state
// change, cancelling a cleared queue, sealing PINs) are this package's functions (rules.go), and
// Service runs them each in a unit of work of its own.
package commands

import (
	"errors"
	"time"

	"github.com/micromdm/nanomdm/mdm"
)

// State is where a command is in its life.
type State string

// Command states. A command moves queued → pushed → acknowledged | error | not_now; not_now
// returns to pushed-like waiting until the device answers for good; expired is set by an
// operator's deadline passing before any answer; cancelled means nanomdm dropped it from the
// device's queue (the device enrolled again, which clears its queue), so it will never be sent.
const (
	StateQueued       State = "queued"
	StatePushed       State = "pushed"
	StateAcknowledged State = "acknowledged"
	StateError        State = "error"
	StateNotNow       State = "not_now"
	StateExpired      State = "expired"
	StateCancelled    State = "cancelled"
)

// States are every command state, in the order a command goes through them.
var States = []State{StateQueued, StatePushed, StateNotNow, StateAcknowledged, StateError, StateExpired, StateCancelled}

// Final reports whether no further device answer is expected.
func (s State) Final() bool {
	return s == StateAcknowledged || s == StateError || s == StateExpired || s == StateCancelled
}

// Record is one command sent to one enrollment.
type Record struct {
	UUID         string           `json:"command_id"`
	EnrollmentID string           `json:"enrollment_id"`
	RequestType  string           `json:"request_type"`
	State        State            `json:"state"`
	RequestedBy  string           `json:"requested_by,omitempty"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
	PushedAt     time.Time        `json:"pushed_at,omitzero"`
	AnsweredAt   time.Time        `json:"answered_at,omitzero"`
	PushError    string           `json:"push_error,omitempty"`
	ErrorChain   []mdm.ErrorChain `json:"error_chain,omitempty"`
	// Detail says why a command ended without an answer (cancelled or expired).
	Detail string `json:"detail,omitempty"`
}

// Result is a device's answer to a command, parsed.
type Result struct {
	EnrollmentID string           `json:"enrollment_id"`
	CommandUUID  string           `json:"command_id"`
	RequestType  string           `json:"request_type,omitempty"`
	Status       string           `json:"status"`
	ReceivedAt   time.Time        `json:"received_at"`
	ErrorChain   []mdm.ErrorChain `json:"error_chain,omitempty"`

	SecurityInfo      *SecurityInfo      `json:"security_info,omitempty"`
	DeviceInformation *DeviceInformation `json:"device_information,omitempty"`
	ProfileList       []Profile          `json:"profile_list,omitempty"`
	// Restrictions are the boolean restrictions in force on the device (the Restrictions
	// command's GlobalRestrictions restrictedBool), by key.
	Restrictions map[string]bool `json:"restrictions,omitempty"`
}

// ErrNotFound is returned for an unknown command, result or PIN.
var ErrNotFound = errors.New("commands: no such command")

// stateOf is the state a command's record takes for the status of the device's answer.
func stateOf(status string) State {
	switch status {
	case "Acknowledged":
		return StateAcknowledged
	case "NotNow":
		return StateNotNow
	default:
		return StateError
	}
}
