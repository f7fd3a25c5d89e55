// Package agentcmd queues commands (lock, wipe) for mdmagent devices and delivers them by long
// poll. A command is committed to the store before it is acknowledged to the caller and stays
// until the agent reports its result, so a server restart between "wipe accepted" and "agent
// polled" loses nothing.
//
// What is stored is behind a Repository (repository.go); the rules over it (enqueue, delivery,
// a result's state) are this package's functions (rules.go), and Queue runs them, each in a unit
// of work of its own, and wakes the long polls.
package agentcmd

import (
	"errors"
	"fmt"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// Command types an agent carries out.
const (
	TypeLock = "lock"
	TypeWipe = "wipe"
	// TypeLostMode is an Android phone's lost mode (START_LOST_MODE); agents never get one.
	TypeLostMode = "lost_mode"
)

// Command states, named as the MDM command states are (mdmserver/commands) so that an operator
// reads one vocabulary for both kinds of device.
const (
	StateQueued       = "queued"       // committed, not yet fetched
	StateDelivered    = "delivered"    // handed to the agent at least once
	StateAcknowledged = "acknowledged" // the agent reported success
	StatePartial      = "partial"      // the agent did part of it: a wipe that left managed data behind
	StateError        = "error"        // the agent reported failure
)

// Result statuses, as the agent reports them. A wipe is done only when no path was refused or
// failed; otherwise it is partial.
const (
	ResultDone    = "done"
	ResultPartial = "partial"
	ResultFailed  = "failed"
)

// Outcomes of one managed data path in a selective wipe.
const (
	OutcomeRemoved = "removed" // it existed and is gone
	OutcomeAbsent  = "absent"  // nothing was there
	OutcomeRefused = "refused" // the agent would not touch it (Reason says why)
	OutcomeFailed  = "failed"  // removing it did not finish (Reason says why)
)

// Bounds on a result, so that a device cannot make the server store or show more.
const (
	MaxResultPaths = 4096
	maxDetail      = 4096
	maxPath        = 4096
	maxReason      = 1024
)

// Command is one command for one device, in the shape the agent receives it.
type Command struct {
	ID          string    `json:"id"`
	DeviceID    string    `json:"device_id"`
	Type        string    `json:"type"`
	Mode        string    `json:"mode,omitempty"` // wipe: selective (agents do selective only)
	Reason      string    `json:"reason,omitempty"`
	IssuedAt    time.Time `json:"issued_at"`
	IssuedBy    string    `json:"issued_by,omitempty"`
	ManagedData []string  `json:"managed_data,omitempty"`

	State       string    `json:"state"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	Result      *Result   `json:"result,omitempty"`
}

// Result is what the agent reports for a command. Paths came later than Removed: an agent that
// predates them reports a wipe's removed paths only.
type Result struct {
	Status     string       `json:"status"` // done, partial (wipe only) or failed
	Detail     string       `json:"detail,omitempty"`
	Removed    []string     `json:"removed,omitempty"`
	Paths      []PathResult `json:"paths,omitempty"`
	FinishedAt time.Time    `json:"finished_at,omitzero"`
}

// PathResult is what a selective wipe did with one managed data path.
type PathResult struct {
	Path    string `json:"path"`              // on the device, "~/" expanded per user
	Managed string `json:"managed,omitempty"` // the policy's entry, when it differs
	Outcome string `json:"outcome"`           // removed, absent, refused or failed
	Reason  string `json:"reason,omitempty"`
}

// Count returns how many paths had each outcome.
func (r *Result) Count() map[string]int {
	n := map[string]int{}
	for _, p := range r.Paths {
		n[p.Outcome]++
	}
	return n
}

// check validates r as the result of a command of type typ, and makes a wipe that says done
// while listing paths it refused or failed partial: the paths are the evidence.
func (r *Result) check(typ string) error {
	switch {
	case r.Status != ResultDone && r.Status != ResultPartial && r.Status != ResultFailed:
		return fmt.Errorf("%w: status must be done, partial or failed", ErrInvalid)
	case r.Status == ResultPartial && typ != TypeWipe:
		return fmt.Errorf("%w: only a wipe can be partial", ErrInvalid)
	case len(r.Detail) > maxDetail || len(r.Removed) > MaxResultPaths || len(r.Paths) > MaxResultPaths:
		return fmt.Errorf("%w: result too large (detail up to %d bytes, up to %d paths)", ErrInvalid, maxDetail, MaxResultPaths)
	}
	for _, p := range r.Removed {
		if len(p) > maxPath {
			return fmt.Errorf("%w: a removed path is longer than %d bytes", ErrInvalid, maxPath)
		}
	}
	for _, p := range r.Paths {
		switch {
		case p.Path == "" || len(p.Path) > maxPath || len(p.Managed) > maxPath || len(p.Reason) > maxReason:
			return fmt.Errorf("%w: each path needs a path of at most %d bytes and a reason of at most %d", ErrInvalid, maxPath, maxReason)
		case p.Outcome != OutcomeRemoved && p.Outcome != OutcomeAbsent && p.Outcome != OutcomeRefused && p.Outcome != OutcomeFailed:
			return fmt.Errorf("%w: a path's outcome must be removed, absent, refused or failed", ErrInvalid)
		}
	}
	if n := r.Count(); r.Status == ResultDone && n[OutcomeRefused]+n[OutcomeFailed] > 0 {
		r.Status = ResultPartial
	}
	return nil
}

// stateOf is the command state each result status leaves.
var stateOf = map[string]string{ResultDone: StateAcknowledged, ResultPartial: StatePartial, ResultFailed: StateError}

// Finished reports whether the agent reported the command's result.
func (c *Command) Finished() bool {
	return c.State == StateAcknowledged || c.State == StatePartial || c.State == StateError
}

// Errors.
var (
	ErrNotFound = errors.New("agentcmd: no such command")
	ErrInvalid  = errors.New("agentcmd: invalid command")
)

// States are every command state.
var States = []string{StateQueued, StateDelivered, StateAcknowledged, StatePartial, StateError}

// NewID returns a new command ID, for callers that must record the ID before the command is
// enqueued.
func NewID() string {
	return "c_" + randid.Hex(12)
}
