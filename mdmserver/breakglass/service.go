// Package breakglass is HIPAA's emergency access procedure (45 CFR 164.312(a)(2)(ii)) for
// clinical messaging: when a clinician's device is denied for a reason that can wait (an OS
// update, a stale report, a screen-lock setting) in the middle of care that cannot, its owner
// (with the device's own credential) or the security team may open access for a bounded time,
// as the device's policy allows. Every use is on the audit record, told to the backends by a
// security event, counted and logged; it ends by itself at expiry (a timer here, and the access
// index's own deadline), and a security person reviews it afterwards: approved, or revoked at
// once. A device that is wiped, lost, locked, revoked, jailbroken or failing attestation is
// never let through.
package breakglass

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/halemdm/hale/internal/randid"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
)

// Bounds of a request.
const (
	MinReasonLen = 10
	MaxReasonLen = 1000
	MaxNoteLen   = 1000
	// ReviewDue is how old an unreviewed use may get before it is overdue.
	ReviewDue = 24 * time.Hour
)

// Refusal codes: each is a problem code the API answers with (403 unless said).
const (
	RefusedNotAllowed   = "break-glass-not-allowed"     // the policy has no break_glass or forbids it
	RefusedNotOverride  = "break-glass-not-overridable" // a reason it may not override (wiped, jailbroken, ...)
	RefusedNotDenied    = "break-glass-not-needed"      // the device is allowed already (409)
	RefusedLimit        = "break-glass-limit"           // the person used their uses in the window (429)
	RefusedTooLong      = "break-glass-too-long"        // more than the policy's duration (400)
	RefusedNoReason     = "break-glass-reason-required" // no or too short a reason (400)
	RefusedActive       = "break-glass-active"          // one is in force for the device (409)
	RefusedReviewed     = "break-glass-reviewed"        // the use was reviewed already (409)
	RefusedSelfReview   = "break-glass-self-review"     // the reviewer started or granted it
	RefusedUnknownState = "break-glass-device-unknown"  // the device cannot be read (404)
)

// Refusal is why a request changed nothing: a code (Refused*) and a detail for people.
type Refusal struct {
	Code   string
	Detail string
	// Reasons are the device's reasons a not-overridable refusal names.
	Reasons []string
	// RetryAfter is when a person over the limit has a use again.
	RetryAfter time.Duration
}

// Error implements error.
func (r *Refusal) Error() string { return "breakglass: " + r.Code + ": " + r.Detail }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Decisions is the access index (an *access.Index): the device's answer now, and where a use
// is put into force.
type Decisions interface {
	Lookup(deviceID string, now time.Time) access.Answer
	SetBreakGlass(deviceID string, g *access.Grant, now time.Time)
}

// Devices reads device records (an *inventory.Service).
type Devices interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
}

// PolicyFor is the policy in force for a device, nil when none.
type PolicyFor func(d *inventory.Device) (*policies.Policy, error)

// Transmitter signs events for their streams (an *events.Transmitter).
type Transmitter interface {
	Prepare(ctx context.Context, evs ...events.Event) (*events.Emission, error)
}

// Metrics counts uses; nil counts nothing.
type Metrics interface {
	Started(channel string)
	Ended(reason string)
	Refused(code string)
}

// Service starts, ends and reviews uses. Create it with New and Load it before serving.
type Service struct {
	st        Store
	decisions Decisions
	devices   Devices
	policyFor PolicyFor
	events    Transmitter
	log       *slog.Logger
	now       func() time.Time
	metrics   Metrics
	afterFunc func(d time.Duration, f func()) (stop func() bool)

	mu     sync.Mutex
	timers map[string]func() bool // use ID -> stops its expiry timer
	// starting serialises this server's starts, which spares a second start the work of one
	// that cannot commit. The rules (the per-person limit, one use in force per device) do not
	// rest on it: Start checks both on the stored uses inside its unit of work, which sees
	// every other server's commit before it.
	starting sync.Mutex
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithAfterFunc sets how expiry timers are made (default time.AfterFunc): give it the timers
// of the clock WithClock gives (testclock.Clock.AfterFunc in tests).
func WithAfterFunc(f func(d time.Duration, fn func()) (stop func() bool)) Option {
	return func(s *Service) { s.afterFunc = f }
}

// WithMetrics counts uses.
func WithMetrics(m Metrics) Option { return func(s *Service) { s.metrics = m } }

// New returns a Service.
func New(st Store, d Decisions, devices Devices, policyFor PolicyFor, t Transmitter, opts ...Option) *Service {
	s := &Service{st: st, decisions: d, devices: devices, policyFor: policyFor, events: t, log: slog.Default(), now: time.Now,
		timers: map[string]func() bool{}, afterFunc: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Request starts a use.
type Request struct {
	DeviceID string
	Reason   string
	// Duration is how long the use should last; zero: the policy's.
	Duration time.Duration
	// Channel is ChannelDevice (the device's own credential) or ChannelSecurity (a security
	// person grants it); Entry is the caller's audit entry (actor, person, source, request ID).
	Channel string
	Entry   audit.Entry
}

// Start opens access for a device: if its policy allows break-glass, the person has a use left,
// the reason is given and every reason the device is denied for may be overridden. The use,
// its audit entry and the backends' event commit together; then the index lets the device
// through and a timer ends it at expiry. A *Refusal changes nothing.
func (s *Service) Start(ctx context.Context, req Request) (*Use, error) {
	s.starting.Lock()
	defer s.starting.Unlock()
	now := s.now()
	reason := strings.TrimSpace(req.Reason)
	switch n := utf8.RuneCountInString(reason); {
	case n < MinReasonLen:
		return nil, s.refused(refuse(RefusedNoReason, "say why care cannot wait, in at least %d characters", MinReasonLen))
	case n > MaxReasonLen || !utf8.ValidString(reason):
		return nil, s.refused(refuse(RefusedNoReason, "the reason must be valid text of at most %d characters", MaxReasonLen))
	}
	if req.Duration < 0 {
		return nil, s.refused(refuse(RefusedTooLong, "the duration must be positive"))
	}
	dev, err := s.devices.Get(ctx, req.DeviceID)
	if err != nil {
		if errors.Is(err, inventory.ErrNotFound) {
			return nil, s.refused(refuse(RefusedUnknownState, "no enrolled device %s", req.DeviceID))
		}
		return nil, err
	}
	pol, err := s.policyFor(dev)
	if err != nil {
		return nil, err
	}
	if pol == nil || pol.BreakGlass == nil || !pol.BreakGlass.Allowed {
		return nil, s.refused(refuse(RefusedNotAllowed, "the device's policy does not allow emergency access"))
	}
	bg := pol.BreakGlass
	dur := req.Duration
	if dur == 0 {
		dur = bg.BreakGlassDuration()
	}
	if dur > bg.BreakGlassDuration() {
		return nil, s.refused(refuse(RefusedTooLong, "the policy allows at most %s", bg.BreakGlassDuration()))
	}
	// The index may not yet hold another server's use (its grant reaches this server through
	// the change feed): a use in force is checked again on the stored uses below.
	a := s.decisions.Lookup(dev.ID, now)
	if a.Allow {
		if a.BreakGlass != nil {
			return nil, s.refused(refuse(RefusedActive, "emergency access %s is in force until %s", a.BreakGlass.ID, a.BreakGlass.ExpiresAt.Format(time.RFC3339)))
		}
		return nil, s.refused(refuse(RefusedNotDenied, "the device is allowed; no emergency access is needed"))
	}
	if refused := access.Overridable(a, bg.Overridable); len(refused) > 0 {
		r := refuse(RefusedNotOverride, "emergency access cannot override %s", strings.Join(refused, ", "))
		r.Reasons = refused
		return nil, s.refused(r)
	}
	person := dev.Owner
	if person == "" {
		person = "device:" + dev.ID
	}
	u := &Use{
		ID: "bg_" + randid.Hex(12), DeviceID: dev.ID, Person: person, Reason: reason, RequestedBy: req.Entry.Actor,
		Channel: req.Channel, Overrides: a.ReasonCodes(), May: bg.Overridable, Policy: pol.Name, PolicyVersion: pol.Version,
		StartedAt: now.UTC(), ExpiresAt: now.Add(dur).UTC(),
	}
	if req.Channel == ChannelSecurity {
		u.GrantedBy = who(req.Entry)
	}
	ev := s.event(u, posture.EventComplianceChange, posture.EventReasonBreakGlassStarted, now)
	em, err := s.events.Prepare(ctx, ev)
	if err != nil {
		return nil, err
	}
	entry := req.Entry
	entry.Action, entry.Target, entry.Outcome = "break_glass.start", dev.ID, audit.OutcomeOK
	entry.Details = details(entry.Details, map[string]string{"use": u.ID, "person": u.Person, "reason": u.Reason,
		"channel": u.Channel, "overrides": strings.Join(u.Overrides, ","), "expires_at": u.ExpiresAt.Format(time.RFC3339)})
	err = s.st.Update(ctx, func(tx Tx) error {
		// Both rules on the stored uses, which hold every server's commits before this one.
		uses, err := tx.BreakGlass().List(ctx)
		if err != nil {
			return err
		}
		n, oldest := 0, now
		for _, o := range uses {
			if o.Person == person && now.Sub(o.StartedAt) < bg.Window() {
				n++
				if o.StartedAt.Before(oldest) {
					oldest = o.StartedAt
				}
			}
			if o.DeviceID == dev.ID && o.Active(now) {
				return refuse(RefusedActive, "emergency access %s is in force until %s", o.ID, o.ExpiresAt.Format(time.RFC3339))
			}
		}
		if n >= bg.Limit() {
			r := refuse(RefusedLimit, "%s has used emergency access %d time(s) in the last %s, the policy's limit", person, n, bg.Window())
			r.RetryAfter = oldest.Add(bg.Window()).Sub(now)
			return r
		}
		if err := tx.BreakGlass().Put(ctx, u); err != nil {
			return err
		}
		if _, err := em.Commit(ctx, tx.Events()); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx.Audit(), entry)
		return err
	})
	var r *Refusal
	if errors.As(err, &r) {
		return nil, s.refused(r)
	}
	if err != nil {
		return nil, err
	}
	em.Sent()
	s.arm(u)
	if s.metrics != nil {
		s.metrics.Started(u.Channel)
	}
	s.log.WarnContext(ctx, "break-glass: emergency access started", "use", u.ID, "device_id", u.DeviceID, "person", u.Person,
		"channel", u.Channel, "overrides", u.Overrides, "expires_at", u.ExpiresAt, "reason", u.Reason)
	return u, nil
}

func (s *Service) refused(r *Refusal) *Refusal {
	if s.metrics != nil {
		s.metrics.Refused(r.Code)
	}
	return r
}

// arm puts u into force in the index and sets its expiry timer.
func (s *Service) arm(u *Use) {
	s.decisions.SetBreakGlass(u.DeviceID, &access.Grant{ID: u.ID, ExpiresAt: u.ExpiresAt, May: u.May}, s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if stop := s.timers[u.ID]; stop != nil {
		stop()
	}
	id := u.ID
	s.timers[id] = s.afterFunc(u.ExpiresAt.Sub(s.now()), func() { s.expire(id) })
}

// expire ends use id at its expiry: the index already denies by itself (the answer's
// deadline); this records it, tells the backends and drops the grant.
func (s *Service) expire(id string) {
	s.mu.Lock()
	delete(s.timers, id)
	s.mu.Unlock()
	ctx := context.Background()
	if _, err := s.end(ctx, id, EndExpired, audit.Entry{Actor: "system"}); err != nil {
		s.log.Error("break-glass: recording an expiry failed; it is retried at the next start", "use", id, "err", err)
	}
}

// end ends a use that has not ended: records why, emits the session-revoked event and removes
// the grant from the index. An ended use is left alone (nil, nil).
func (s *Service) end(ctx context.Context, id, why string, entry audit.Entry) (*Use, error) {
	now := s.now()
	var ended *Use
	var em *events.Emission
	err := s.st.Update(ctx, func(tx Tx) error {
		ended = nil
		u, err := tx.BreakGlass().Get(ctx, id)
		if err != nil || !u.EndedAt.IsZero() {
			return err
		}
		u.EndedAt, u.EndReason = now.UTC(), why
		if why == EndExpired && now.After(u.ExpiresAt) {
			u.EndedAt = u.ExpiresAt
		}
		em, err = s.events.Prepare(ctx, s.event(u, posture.EventSessionRevoked, posture.EventReasonBreakGlassEnded, now))
		if err != nil {
			return err
		}
		if err := tx.BreakGlass().Put(ctx, u); err != nil {
			return err
		}
		if _, err := em.Commit(ctx, tx.Events()); err != nil {
			return err
		}
		e := entry
		e.Action, e.Target, e.Outcome = "break_glass.end", u.DeviceID, audit.OutcomeOK
		e.Details = details(e.Details, map[string]string{"use": u.ID, "end_reason": why})
		if _, err := audit.Append(ctx, tx.Audit(), e); err != nil {
			return err
		}
		ended = u
		return nil
	})
	if err != nil || ended == nil {
		return nil, err
	}
	em.Sent()
	s.decisions.SetBreakGlass(ended.DeviceID, nil, now)
	if s.metrics != nil {
		s.metrics.Ended(why)
	}
	s.log.Warn("break-glass: emergency access ended", "use", ended.ID, "device_id", ended.DeviceID, "person", ended.Person, "end_reason", why)
	return ended, nil
}

// event is the SET telling the backends about u.
func (s *Service) event(u *Use, typ, code string, now time.Time) events.Event {
	ev := events.Event{Type: typ, DeviceID: u.DeviceID, ReasonCode: code, Initiator: "user", At: now,
		BreakGlass: &posture.BreakGlass{ID: u.ID, ExpiresAt: u.ExpiresAt, Overrides: u.Overrides}, TXN: u.ID}
	if u.Channel == ChannelSecurity {
		ev.Initiator = "admin"
	}
	if typ == posture.EventComplianceChange {
		ev.PreviousStatus, ev.CurrentStatus = "not-compliant", "not-compliant"
		ev.ReasonDetail = "emergency access until " + u.ExpiresAt.Format(time.RFC3339) + " past " + strings.Join(u.Overrides, ", ")
	} else {
		ev.Initiator = "system"
		ev.ReasonDetail = "emergency access ended"
	}
	return ev
}

// Review records a security person's review of a use: approved, or revoked (a use in force
// ends at once). The reviewer may not be the person who used or granted it. The review and its
// audit entry commit together.
func (s *Service) Review(ctx context.Context, id, decision, note string, entry audit.Entry) (*Use, error) {
	if decision != ReviewApproved && decision != ReviewRevoked {
		return nil, refuse(RefusedReviewed, "decision must be approved or revoked")
	}
	if len(note) > MaxNoteLen || !utf8.ValidString(note) {
		return nil, refuse(RefusedNoReason, "the note must be valid text of at most %d characters", MaxNoteLen)
	}
	now := s.now()
	var reviewed *Use
	err := s.st.Update(ctx, func(tx Tx) error {
		u, err := tx.BreakGlass().Get(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case u.Review != nil:
			return refuse(RefusedReviewed, "use %s was %s by %s", u.ID, u.Review.Decision, u.Review.By)
		case who(entry) == u.Person || who(entry) == u.GrantedBy || entry.Actor == u.RequestedBy:
			return refuse(RefusedSelfReview, "a use is reviewed by a security person other than its user and its granter")
		}
		u.Review = &Review{Decision: decision, By: who(entry), TokenID: strings.TrimPrefix(entry.Actor, "token:"), At: now.UTC(), Note: note}
		if err := tx.BreakGlass().Put(ctx, u); err != nil {
			return err
		}
		e := entry
		e.Action, e.Target, e.Outcome = "break_glass.review", u.DeviceID, audit.OutcomeOK
		e.Details = details(e.Details, map[string]string{"use": u.ID, "decision": decision, "note": note})
		if _, err := audit.Append(ctx, tx.Audit(), e); err != nil {
			return err
		}
		reviewed = u
		return nil
	})
	if err != nil {
		return nil, err
	}
	if decision == ReviewRevoked && reviewed.EndedAt.IsZero() {
		s.stopTimer(id)
		if ended, err := s.end(ctx, id, EndRevoked, entry); err != nil {
			return nil, err
		} else if ended != nil {
			reviewed = ended
		}
	}
	s.log.Info("break-glass: use reviewed", "use", id, "decision", decision, "by", who(entry))
	return reviewed, nil
}

func (s *Service) stopTimer(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stop := s.timers[id]; stop != nil {
		stop()
		delete(s.timers, id)
	}
}

// Get returns use id.
func (s *Service) Get(ctx context.Context, id string) (u *Use, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		u, err = tx.BreakGlass().Get(ctx, id)
		return err
	})
	return u, err
}

// Filter selects uses for List.
type Filter struct {
	DeviceID string
	// Unreviewed keeps uses without a review; OlderThan, with it, those started longer ago
	// (ReviewDue: the overdue ones).
	Unreviewed bool
	OlderThan  time.Duration
}

// List returns the uses f selects, oldest first.
func (s *Service) List(ctx context.Context, f Filter) ([]*Use, error) {
	var all []*Use
	err := s.st.View(ctx, func(tx Tx) (err error) {
		all, err = tx.BreakGlass().List(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := all[:0]
	for _, u := range all {
		switch {
		case f.DeviceID != "" && u.DeviceID != f.DeviceID:
		case f.Unreviewed && u.Review != nil:
		case f.Unreviewed && now.Sub(u.StartedAt) < f.OlderThan:
		default:
			out = append(out, u)
		}
	}
	return out, nil
}

// Load puts the uses in force back into the index and re-arms their timers, and ends (with
// their events) those whose expiry passed while the server was down. Run it once at start.
func (s *Service) Load(ctx context.Context) error {
	uses, err := s.List(ctx, Filter{})
	if err != nil {
		return err
	}
	now := s.now()
	for _, u := range uses {
		switch {
		case !u.EndedAt.IsZero():
		case u.Active(now):
			s.arm(u)
		default:
			if _, err := s.end(ctx, u.ID, EndExpired, audit.Entry{Actor: "system"}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close stops the expiry timers (a use in force stays recorded; Load re-arms it).
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, stop := range s.timers {
		stop()
		delete(s.timers, id)
	}
}

// who names the person behind an audit entry: the token's person, or the actor itself for a
// token that names none.
func who(e audit.Entry) string {
	if e.Person != "" {
		return e.Person
	}
	return e.Actor
}

func details(base, add map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(add))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

// Overdue reports whether u still awaits its review past ReviewDue at now.
func Overdue(u *Use, now time.Time) bool { return u.Review == nil && now.Sub(u.StartedAt) >= ReviewDue }
