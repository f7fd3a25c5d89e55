package api

import (
	"time"

	"github.com/halemdm/hale/policies"
)

// The body of PUT /api/v1/policies/{name} and of a dry run is the policy document itself, YAML
// or JSON (package policies).

// Policy is a stored policy as the admin API shows it: GET /api/v1/policies/{name} (with its
// source) and an entry of GET /api/v1/policies (without).
type Policy struct {
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
	// Source is the document as it was applied.
	Source string `json:"source,omitempty"`
}

// PolicyApplied is the answer to PUT /api/v1/policies/{name}: the new version, and the rules no
// source Hale has can observe on some platforms (never null). Such a policy still applies (it
// may be meant for other platforms), but devices there can never meet those rules.
type PolicyApplied struct {
	Name         string                      `json:"name"`
	Unobservable []policies.UnobservableRule `json:"unobservable"`
	// NotEnforced are the rules no device control enforces on some platforms (never null):
	// devices there are not held to them.
	NotEnforced []policies.NotEnforcedRule `json:"not_enforced"`
	UpdatedAt   time.Time                  `json:"updated_at"`
	Version     int                        `json:"version"`
}

// Target is what a policy is assigned to: the default (every device without a group or device
// assignment), a group, or one device.
type Target struct {
	// Kind is default, group or device.
	Kind string `json:"kind"`
	// Name is the group or the device ID; empty for the default.
	Name string `json:"name,omitempty"`
}

// Assignment is one policy assignment: the body of PUT /api/v1/assignments, and an entry of the
// assignment lists.
type Assignment struct {
	Target Target `json:"target"`
	Policy string `json:"policy"`
}

// Assignments is the answer to PUT /api/v1/assignments: every assignment, the default first.
type Assignments struct {
	Assignments []Assignment `json:"assignments"`
}

// Policies is GET /api/v1/policies: the policies and where they are assigned.
type Policies struct {
	Assignments []Assignment `json:"assignments"`
	Policies    []Policy     `json:"policies"`
}

// DryRun is the answer to POST /api/v1/policies/{name}/dry-run: the devices that would be
// noncompliant under the policy, and its unobservable rules (both never null). Nothing changes.
type DryRun struct {
	Noncompliant []DryRunDevice              `json:"noncompliant"`
	Policy       string                      `json:"policy"`
	Unobservable []policies.UnobservableRule `json:"unobservable"`
	// NotEnforced are the rules no device control enforces on some platforms (never null).
	NotEnforced []policies.NotEnforcedRule `json:"not_enforced"`
	// Conflicts name settings that undo each other's purpose (never null); the policy is
	// still valid.
	Conflicts []string `json:"conflicts"`
}

// DryRunDevice is a device a dry run finds noncompliant, and why.
type DryRunDevice struct {
	DeviceID string            `json:"device_id"`
	Group    string            `json:"group,omitempty"`
	State    string            `json:"state"`
	Reasons  []policies.Reason `json:"reasons"`
	// InGrace is true when the device would still be allowed now because of the grace period.
	InGrace    bool      `json:"in_grace"`
	GraceUntil time.Time `json:"grace_until,omitzero"`
}
