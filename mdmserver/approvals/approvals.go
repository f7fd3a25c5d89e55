// Package approvals keeps the requests that need a second person before they are carried out:
// the two-person rule for wipes. A request is made by one person and approved or rejected by
// another; it expires if nobody decides in time. Requests are never deleted, so the
// [Repository] answers, long after, who asked, who agreed and when.
//
// The rule counts people, not tokens (see [SecondPerson]): one person may hold several tokens,
// and whoever created a token could have created it for themselves.
package approvals

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// States of a request. Expired is never stored: a pending request past its expiry reads as
// expired, so no sweeper has to run for a request to lapse.
const (
	StatePending  = "pending"
	StateApproved = "approved"
	StateRejected = "rejected"
	StateExpired  = "expired"
)

// Request is one action awaiting (or past) a second person's decision.
type Request struct {
	ID       string `json:"id"`
	Action   string `json:"action"` // e.g. "wipe"
	DeviceID string `json:"device_id"`
	Group    string `json:"group,omitempty"`
	Reason   string `json:"reason"`
	Mode     string `json:"mode,omitempty"`
	State    string `json:"state"`
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
	// Params are the action's parameters, opaque here and sealed by the caller when they hold
	// secrets (a wipe's PIN). Never shown.
	Params []byte `json:"-"`
}

// Errors callers test for with errors.Is.
var (
	ErrNotFound   = errors.New("approvals: no such request")
	ErrDecided    = errors.New("approvals: the request was already decided")
	ErrExpired    = errors.New("approvals: the request expired")
	ErrSamePerson = errors.New("approvals: the requester cannot decide their own request")
	// ErrCreator is returned when one of the two created the other's token (directly or
	// through tokens they created): they could have minted it for themselves.
	ErrCreator = errors.New("approvals: one of the two people created the other's token")
)

// Party is a token holder taking part in a request.
type Party struct {
	// Name is the token as shown: "<name> (<token id>)".
	Name    string
	TokenID string
	// Person is who the token belongs to.
	Person string
	// Creators are the people whose tokens created this token, nearest first.
	Creators []string
}

// Requester is the party that made r.
func (r *Request) Requester() Party {
	return Party{Name: r.RequestedBy, TokenID: r.RequesterTokenID, Person: r.RequesterPerson, Creators: r.RequesterCreators}
}

// SecondPerson reports whether decider may decide a request made by requester under the
// two-person rule: they are different tokens of different people, and neither person created
// the other's token, directly or through a token they created (an admin who mints a token for a
// made-up person still created it). The error says which part failed, in words an operator can
// act on. People are compared without regard to case; a party without a person (a request
// stored before tokens had people) is compared by token alone.
func SecondPerson(requester, decider Party) error {
	same := func(a, b string) bool { return a != "" && b != "" && strings.EqualFold(a, b) }
	switch {
	case requester.TokenID == decider.TokenID:
		return fmt.Errorf("%w: it was requested with the same token", ErrSamePerson)
	case same(requester.Person, decider.Person):
		return fmt.Errorf("%w: both tokens belong to %q", ErrSamePerson, decider.Person)
	case slices.ContainsFunc(requester.Creators, func(p string) bool { return same(p, decider.Person) }):
		return fmt.Errorf("%w: %q created the requester's token", ErrCreator, decider.Person)
	case slices.ContainsFunc(decider.Creators, func(p string) bool { return same(p, requester.Person) }):
		return fmt.Errorf("%w: the requester %q created the approver's token", ErrCreator, requester.Person)
	}
	return nil
}
