package breakglass

import (
	"context"
	"errors"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/events"
)

// Use is one emergency access use: who started it for which device and why, what it let
// through, until when, how it ended and who reviewed it.
type Use struct {
	ID       string `json:"id"`
	DeviceID string `json:"device_id"`
	// Person is whose use it is (the device's owner): the policy's limit counts per person.
	Person string `json:"person"`
	// Reason is what the person (or the granting security officer) typed: why care could not
	// wait.
	Reason string `json:"reason"`
	// RequestedBy is the actor that started it ("device:<id>" or "token:<id>") and Channel how:
	// "device" (the owner, with the device's own credential) or "security" (granted).
	RequestedBy string `json:"requested_by"`
	Channel     string `json:"channel"`
	// GrantedBy is the security person who granted it (Channel "security").
	GrantedBy string `json:"granted_by,omitempty"`
	// Overrides are the reason codes the device was denied for when it started; May the codes
	// the policy let it override.
	Overrides     []string  `json:"overrides"`
	May           []string  `json:"may"`
	Policy        string    `json:"policy"`
	PolicyVersion int       `json:"policy_version"`
	StartedAt     time.Time `json:"started_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	// EndedAt is when it ended (zero while in force, or until its expiry was handled) and
	// EndReason why: EndExpired or EndRevoked.
	EndedAt   time.Time `json:"ended_at,omitzero"`
	EndReason string    `json:"end_reason,omitempty"`
	// Review is the security team's review; nil until reviewed.
	Review *Review `json:"review,omitempty"`
}

// How a use ended.
const (
	EndExpired = "expired"
	EndRevoked = "revoked"
)

// Channels.
const (
	ChannelDevice   = "device"
	ChannelSecurity = "security"
)

// Review is a security person's verdict on a use: approved (it was justified), or revoked (it
// was not; a use still in force ends at once).
type Review struct {
	Decision string    `json:"decision"` // ReviewApproved or ReviewRevoked
	By       string    `json:"by"`       // the reviewer's person
	TokenID  string    `json:"token_id,omitempty"`
	At       time.Time `json:"at"`
	Note     string    `json:"note,omitempty"`
}

// Review decisions.
const (
	ReviewApproved = "approved"
	ReviewRevoked  = "revoked"
)

// Active reports whether u is in force at now.
func (u *Use) Active(now time.Time) bool { return u.EndedAt.IsZero() && now.Before(u.ExpiresAt) }

// Repository keeps the uses by ID. It only stores and reads; the rules are the Service's.
type Repository interface {
	// Get returns use id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (*Use, error)
	// Put stores u under u.ID, replacing what was stored there.
	Put(ctx context.Context, u *Use) error
	// List returns every use, oldest start first.
	List(ctx context.Context) ([]*Use, error)
}

// ErrNotFound: no use has the ID.
var ErrNotFound = errors.New("breakglass: no such use")

// Tx is what a break-glass unit of work reaches: the uses, the audit log and the event outbox,
// so a use, its audit entry and the backends' news commit together.
type Tx interface {
	BreakGlass() Repository
	Audit() audit.Repository
	Events() events.Repository
}

// Store runs the service's units of work (storage.Scope(st, func(tx storage.Tx)
// breakglass.Tx { return tx }) is one).
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
}
