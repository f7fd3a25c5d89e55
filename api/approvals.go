package api

import "time"

// Approval is a request held under the two-person rule (today: a wipe), awaiting or past a
// second person's decision.
type Approval struct {
	ID       string `json:"id"`
	Action   string `json:"action"`
	DeviceID string `json:"device_id"`
	Group    string `json:"group,omitempty"`
	Reason   string `json:"reason"`
	Mode     string `json:"mode,omitempty"`
	// State is pending, approved, rejected or expired.
	State string `json:"state"`
	// RequestedBy and DecidedBy name the tokens ("<name> (<token id>)"); the people they
	// belong to, and the people who created the requester's token, are what the two-person
	// rule compares.
	RequestedBy       string    `json:"requested_by"`
	RequesterTokenID  string    `json:"requester_token_id"`
	RequesterPerson   string    `json:"requester_person,omitempty"`
	RequesterCreators []string  `json:"requester_creators,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	ExpiresAt         time.Time `json:"expires_at"`
	DecidedBy         string    `json:"decided_by,omitempty"`
	DeciderTokenID    string    `json:"decider_token_id,omitempty"`
	DeciderPerson     string    `json:"decider_person,omitempty"`
	DecidedAt         time.Time `json:"decided_at,omitzero"`
	Comment           string    `json:"comment,omitempty"`
	// CommandID is the command sent once the request was approved.
	CommandID string `json:"command_id,omitempty"`
}

// Approvals is GET /api/v1/approvals, newest first.
type Approvals struct {
	Approvals []Approval `json:"approvals"`
}

// ApprovalDecision is the body of POST /api/v1/approvals/{id}.
type ApprovalDecision struct {
	// Decision is approve (the default) or reject.
	Decision string `json:"decision"`
	// Comment goes on the record (at most 500 characters).
	Comment string `json:"comment"`
}

// ApprovalDecided is the answer to POST /api/v1/approvals/{id}: the decided request and, once
// approved, the command it was carried out with.
type ApprovalDecided struct {
	Approval
	Command *SecurityAnswer `json:"command,omitempty"`
}
