// Package revocation tells the messaging backends, by Security Event Tokens, that devices'
// access decisions changed: session-revoked when a device may no longer open sessions (locked,
// lost, wipe ordered, wiped, unenrolled, or noncompliant past grace), and
// device-compliance-change when its compliance flipped. Each revocation goes on the audit
// record in the same unit of work as its events.
//
// It is a plain listener of the compliance engine (Emitter.Emit, registered with
// compliance.Engine.OnChange by the composition) and holds only the transmitter, the store and a
// logger: nothing in it calls back into the server. Reevaluator is the other half, for the
// services that change a device's state: it re-derives the device's decision, naming the
// command behind the change (CausedBy) so the events carry it as their txn.
package revocation

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

// Tx is what an emission's unit of work reaches: the event outbox and the audit log.
type Tx interface {
	Events() events.Repository
	Audit() audit.Repository
}

// Store runs an emission's unit of work (storage.Scope(st, func(tx storage.Tx) revocation.Tx {
// return tx }) is one).
type Store interface {
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}

// Transmitter signs events for their streams (an *events.Transmitter).
type Transmitter interface {
	Prepare(ctx context.Context, evs ...events.Event) (*events.Emission, error)
}

// Emitter turns the compliance engine's decision changes into security events. Its Emit runs
// after the changes committed, and their events are committed to the outbox, in one unit of
// work, before it returns.
//
// Each revocation is also put on the audit record ("access.revoked", by "system"), in the same
// unit of work as its SETs: the record that a device's sessions were revoked exists if and only
// if the events telling the backends do.
type Emitter struct {
	events       Transmitter
	store        Store
	log          *slog.Logger
	appInstances func(ctx context.Context, deviceID string) []string
}

// EmitterOption configures an Emitter.
type EmitterOption func(*Emitter)

// WithAppInstances has every session-revoked event also sent once per messaging app instance of
// the device that list returns (its instances still in force), naming the instance with the
// device, so a backend holding sessions by app instance hears of each.
func WithAppInstances(list func(ctx context.Context, deviceID string) []string) EmitterOption {
	return func(e *Emitter) { e.appInstances = list }
}

// NewEmitter returns an Emitter that prepares events with t and commits them on st.
func NewEmitter(t Transmitter, st Store, log *slog.Logger, opts ...EmitterOption) *Emitter {
	e := &Emitter{events: t, store: st, log: log}
	for _, opt := range opts {
		opt(e)
	}
	return e
}

// Emit turns changes into events and commits them with their audit entries: a
// compliance.ChangeFunc.
func (r *Emitter) Emit(ctx context.Context, changes []compliance.Change) {
	now := time.Now()
	var evs []events.Event
	var records []audit.Entry
	for _, c := range changes {
		devEvents := Events(c, now)
		txn := causeOf(ctx, c.DeviceID)
		for i := range devEvents {
			devEvents[i].TXN = txn
		}
		evs = append(evs, devEvents...)
		if r.appInstances != nil {
			for _, ev := range devEvents {
				if ev.Type != posture.EventSessionRevoked {
					continue
				}
				for _, id := range r.appInstances(ctx, c.DeviceID) {
					app := ev
					app.AppInstance = id
					evs = append(evs, app)
				}
			}
		}
		if e, ok := revocationRecord(c.DeviceID, devEvents); ok {
			records = append(records, e)
		}
	}
	if len(evs) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	em, err := r.events.Prepare(ctx, evs...)
	if err == nil {
		err = r.store.Update(ctx, func(tx Tx) error {
			streams, err := em.Commit(ctx, tx.Events())
			if err != nil {
				return err
			}
			for _, e := range records {
				// How many streams carry the news: the drill fails a revocation no backend hears.
				e.Details["streams"] = strconv.Itoa(streams)
				if _, err := audit.Append(ctx, tx.Audit(), e); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		r.log.ErrorContext(ctx, "security events not emitted", "devices", len(changes), "err", err)
		return
	}
	em.Sent()
}

// revocationRecord is the audit entry for a device's events when they revoke its sessions.
func revocationRecord(deviceID string, evs []events.Event) (audit.Entry, bool) {
	var types []string
	revoked := -1
	for i, ev := range evs {
		types = append(types, ev.Type)
		if ev.Type == posture.EventSessionRevoked {
			revoked = i
		}
	}
	if revoked < 0 {
		return audit.Entry{}, false
	}
	ev := evs[revoked]
	return audit.Entry{
		Time: ev.At, Actor: "system", Action: "access.revoked", Target: deviceID, Outcome: audit.OutcomeOK,
		Details: map[string]string{"reason_code": ev.ReasonCode, "initiator": ev.Initiator, "events": strings.Join(types, " "), "txn": ev.TXN},
	}, true
}

// Events are the events one decision change calls for.
func Events(c compliance.Change, now time.Time) []events.Event {
	was, is := c.Old.Answer(now), c.New.Answer(now)
	var code, detail string
	if len(is.Reasons) > 0 {
		code, detail = is.Reasons[0].Code, is.Reasons[0].Detail
	}
	var evs []events.Event
	if was.Compliant != is.Compliant {
		evs = append(evs, events.Event{
			Type: posture.EventComplianceChange, DeviceID: c.DeviceID, At: now, Initiator: "policy",
			PreviousStatus: complianceStatus(was.Compliant), CurrentStatus: complianceStatus(is.Compliant),
			ReasonCode: code, ReasonDetail: detail,
		})
	}
	if !is.Allow && (was.Allow || c.New.State != c.Old.State) {
		// Every state but active follows from an administrator's action (lock, lost mode, a
		// wipe and its acknowledgement, unenroll); a denial without one is the policy's.
		initiator := "policy"
		if c.New.State != c.Old.State && c.New.State != "" && c.New.State != "active" {
			initiator = "admin"
		}
		evs = append(evs, events.Event{
			Type: posture.EventSessionRevoked, DeviceID: c.DeviceID, At: now, Initiator: initiator,
			ReasonCode: code, ReasonDetail: detail,
		})
	}
	return evs
}

func complianceStatus(compliant bool) string {
	if compliant {
		return "compliant"
	}
	return "not-compliant"
}
