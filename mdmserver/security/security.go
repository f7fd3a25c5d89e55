// Package security carries out Hale's security operations on devices: lock, lost mode and wipe
// (full for Apple devices, selective for agents); the two-person rule that holds a wipe for a
// second person, and carrying out a wipe once approved; the PINs a Mac's lock or erase carries,
// sealed at rest and shown on the record only; the answers saved for Idempotency-Keys; finishing
// a wipe its device acknowledged, or marking one that left data behind incomplete; and
// unenrollment, which revokes the device's certificates.
//
// An order is on the record exactly when it is in force: the device's new state, its wipe mark,
// its sealed PIN, its idempotent answer and its audit entry commit in one unit of work, and the
// access decision follows before the command is queued, so no moment exists where a device
// ordered wiped can still open a session.
//
// Several servers may share one database. Every rule an order depends on (an Idempotency-Key
// already answered, the device's management ended, a wipe on its way or awaiting approval, an
// approval already carried out) is checked in the unit of work that acts, so it holds whichever
// server commits first. Operations on one device also run one at a time per server, which only
// spares work.
//
// The service knows nothing of HTTP: the caller passes who asks as an [Actor], and the
// Idempotency-Key as an idempotency.Key. Refusals an operator can act on are [Refusal]s.
package security

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math/big"
	"sync"
	"time"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// Tx is what the security operations need of a unit of work: the repositories an order, its
// audit entry and its idempotent answer commit through together.
type Tx interface {
	Inventory() inventory.Repository
	Commands() commands.Repository
	AgentCommands() agentcmd.Repository
	Approvals() approvals.Repository
	Idempotency() idempotency.Repository
	Audit() audit.Repository
}

// WipeTx is what marking a wipe incomplete needs of the caller's unit of work.
type WipeTx interface {
	Inventory() inventory.Repository
	Audit() audit.Repository
}

// Store runs the service's units of work (storage.Scope(st, func(tx storage.Tx) security.Tx {
// return tx }) is one).
type Store interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}

// Devices reads and moves the device records (an *inventory.Service).
type Devices interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
	List(ctx context.Context, f inventory.Filter, cursor string, limit int) ([]inventory.Device, string, error)
	SetState(ctx context.Context, id string, state inventory.State, at time.Time) (*inventory.Device, error)
}

// Approvals reads the two-person rule's requests (an *approvals.Service).
type Approvals interface {
	Get(ctx context.Context, id string) (*approvals.Request, error)
	Pending(ctx context.Context, deviceID string) (*approvals.Request, error)
	// Now is the approvals' clock: when a request is made or decided.
	Now() time.Time
}

// Tokens reads the API tokens the two-person rule follows to people (a *tokens.Service).
type Tokens interface {
	Get(ctx context.Context, id string) (*tokens.Token, error)
	// Creators are the people whose tokens created t, nearest first.
	Creators(ctx context.Context, t *tokens.Token) ([]string, error)
}

// AppleCommands reads the MDM commands sent to Apple devices and their sealed PINs (a
// *commands.Service).
type AppleCommands interface {
	Get(ctx context.Context, enrollmentID, uuid string) (*commands.Record, error)
	PIN(ctx context.Context, key *seal.Key, uuid string) (string, error)
}

// AppleSender queues an MDM command for an Apple device and pushes it (a *commands.Dispatcher).
type AppleSender interface {
	Send(ctx context.Context, enrollmentID string, cmd commands.Command, requestedBy string) (*commands.Record, error)
}

// AgentCommands queues agents' commands (an *agentcmd.Queue, which also wakes their long polls).
type AgentCommands interface {
	Enqueue(ctx context.Context, c agentcmd.Command) (*agentcmd.Command, error)
	Get(ctx context.Context, deviceID, id string) (*agentcmd.Command, error)
}

// AndroidCommands carries out lock, lost mode and wipe on Android phones through the Android
// Management API (an *android.Service, adapted by the composition).
type AndroidCommands interface {
	// Allowed refuses, before anything is ordered, a wipe mode the phone cannot take.
	Allowed(ctx context.Context, d *inventory.Device, wipe bool, mode string) error
	// Issue sends the command recorded as cmd to the phone.
	Issue(ctx context.Context, d *inventory.Device, cmd agentcmd.Command, message, phone string) error
}

// Auditor appends an entry to the audit log in a unit of work of its own (an *audit.Log), for
// what must be recorded whether or not anything else happened (a refusal).
type Auditor interface {
	Append(ctx context.Context, e audit.Entry) (int64, error)
}

// Revoker revokes the certificates Hale issued (a *certs.Authority).
type Revoker interface {
	Revoke(ctx context.Context, serial *big.Int, reason string) error
}

// Policies finds a device's effective policy, whose managed_data a selective wipe removes (a
// *compliance.PolicyStore).
type Policies interface {
	Effective(d *inventory.Device) (*compliance.StoredPolicy, error)
}

// Decisions re-derives a device's access decision after the service changed its state.
type Decisions interface {
	// DeviceChanged re-evaluates deviceID. commandID is the lock, lost mode or wipe that caused
	// the change: the security events the change sends carry it as their txn, so a backend can
	// tie a revocation to the command behind it.
	DeviceChanged(ctx context.Context, deviceID, commandID string)
}

// Deps are the services the security operations use. Every field must be set.
type Deps struct {
	Store Store
	// Key seals the PINs and an approval's parameters (which may carry a PIN).
	Key       *seal.Key
	Devices   Devices
	Approvals Approvals
	Tokens    Tokens
	Apple     AppleCommands
	Send      AppleSender
	Agent     AgentCommands
	Audit     Auditor
	CA        Revoker
	Policies  Policies
	Decisions Decisions
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger of failures that do not fail the operation (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithTwoPersonRule holds every wipe (full and selective) of a device whose group needs reports
// true for a second person holding a security token, for at most ttl. Without it no wipe is
// held.
func WithTwoPersonRule(needs func(group string) bool, ttl time.Duration) Option {
	return func(s *Service) { s.needsApproval, s.approvalTTL = needs, ttl }
}

// WithAndroid carries out the operations on Android phones through a. Without it they are
// refused.
func WithAndroid(a AndroidCommands) Option { return func(s *Service) { s.android = a } }

// Service carries out the security operations. Its methods are safe for concurrent use.
type Service struct {
	dep           Deps
	log           *slog.Logger
	needsApproval func(group string) bool
	approvalTTL   time.Duration
	android       AndroidCommands

	// locks holds a *sync.Mutex per device ID: lock, lost mode, wipe and approval decisions for
	// one device run one at a time on this server (serialize). They cut contention only;
	// correctness across servers comes from the checks inside the unit of work (recheck).
	locks sync.Map
}

// New returns a Service on d.
func New(d Deps, opts ...Option) (*Service, error) {
	if d.Store == nil || d.Key == nil || d.Devices == nil || d.Approvals == nil || d.Tokens == nil || d.Apple == nil ||
		d.Send == nil || d.Agent == nil || d.Audit == nil || d.CA == nil || d.Policies == nil || d.Decisions == nil {
		return nil, errors.New("security: every dependency must be set")
	}
	s := &Service{dep: d, log: slog.Default(), needsApproval: func(string) bool { return false }}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Actor is who asks for an operation, as the service records it.
type Actor struct {
	// Audit is the caller's audit entry with no action yet (httpapi.Entry with an empty event):
	// who, in which role, for which person, from where, under which request.
	Audit audit.Entry
	// Token is the caller's API token; the two-person rule and Idempotency-Keys follow it.
	Token *tokens.Token
	// Name names the caller on the commands it issues: "<token name> (<token id>)".
	Name string
}

// entry is by's audit entry for action on target, with details; outcome is audit.OutcomeOK
// when empty. The template's own details (the token's name) are kept.
func (by Actor) entry(action, target, outcome string, details map[string]string) audit.Entry {
	return withEvent(by.Audit, action, target, outcome, details)
}

// withEvent is the entry tmpl (an actor's, with no action) for action on target.
func withEvent(tmpl audit.Entry, action, target, outcome string, details map[string]string) audit.Entry {
	e := tmpl
	e.Action, e.Target, e.Outcome, e.Details = action, target, outcome, details
	if e.Outcome == "" {
		e.Outcome = audit.OutcomeOK
	}
	if len(tmpl.Details) > 0 {
		e.Details = make(map[string]string, len(details)+len(tmpl.Details))
		maps.Copy(e.Details, details)
		maps.Copy(e.Details, tmpl.Details)
	}
	return e
}

// record appends e in a unit of work of its own. A failure is logged loudly and returned; the
// caller decides whether it may go on unrecorded.
func (s *Service) record(ctx context.Context, e audit.Entry) error {
	_, err := s.dep.Audit.Append(context.WithoutCancel(ctx), e)
	if err != nil {
		s.log.ErrorContext(ctx, "AUDIT APPEND FAILED", "action", e.Action, "target", e.Target, "err", err)
	}
	return err
}

// serialize locks deviceID's security operations on this server and returns the unlock. Locks
// are per device, so a slow APNs push for one device holds up no other. Another server does not
// see this lock: nothing may rely on it for correctness (see recheck).
func (s *Service) serialize(deviceID string) (unlock func()) {
	m, _ := s.locks.LoadOrStore(deviceID, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Errors a Refusal wraps: what kind of refusal it is, for the caller to answer (400, 403, 404
// or 409).
var (
	// ErrInvalid is a request the operation cannot take as given.
	ErrInvalid = errors.New("security: invalid request")
	// ErrNotFound is a command, or a command's PIN, that does not exist.
	ErrNotFound = errors.New("security: not found")
	// ErrInvalidState is a device whose state refuses the operation (wiped, unenrolled,
	// retired).
	ErrInvalidState = errors.New("security: the device's state refuses the operation")
	// ErrWipePending is a wipe ordered while another is on its way.
	ErrWipePending = errors.New("security: a wipe is already on its way")
	// ErrApprovalPending is a wipe ordered while another awaits approval.
	ErrApprovalPending = errors.New("security: a wipe already awaits approval")
	// ErrNotEligible is a decision by a token that cannot be the second approver.
	ErrNotEligible = errors.New("security: not an eligible second approver")
	// ErrUpstream is a service the operation goes through (the Android Management API) that
	// failed or refused it.
	ErrUpstream = errors.New("security: the device's management service refused or failed")
)

// Refusal is an operation the service refused, with the reason in words an operator can act
// on. It wraps one of the errors above.
type Refusal struct {
	Kind   error
	Detail string
}

func (r *Refusal) Error() string { return r.Detail }

// Unwrap is the refusal's kind.
func (r *Refusal) Unwrap() error { return r.Kind }

func refuse(kind error, detail string) error { return &Refusal{Kind: kind, Detail: detail} }

// ended reports whether d's management is over: nothing more can be done to it.
func ended(d *inventory.Device) bool {
	switch d.State {
	case inventory.StateWiped, inventory.StateUnenrolled, inventory.StateRetired:
		return true
	}
	return false
}

// answerState is the state an action leaves a device in, as the API answers it.
func answerState(action Action, state inventory.State) string {
	if action == Wipe {
		return "wipe_pending"
	}
	return string(state)
}
