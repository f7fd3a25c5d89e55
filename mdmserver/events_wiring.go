package mdmserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
	"github.com/halemdm/hale/posture"
)

// revocations tells the backends, by Security Event Tokens, that devices' decisions changed:
// session-revoked when a device may no longer open sessions (locked, lost, wipe ordered, wiped,
// unenrolled, or noncompliant past grace), and device-compliance-change when its compliance
// flipped. Its emit is the compliance engine's change listener (a plain subscription the
// composition registers): it runs after the changes committed, and their events are committed
// to the outbox, in one unit of work, before it returns.
//
// Each revocation is also put on the audit record ("access.revoked", by "system"), in the same
// unit of work as its SETs: the record that a device's sessions were revoked exists if and only
// if the events telling the backends do.
type revocations struct {
	events *events.Transmitter
	store  storage.Store
	log    *slog.Logger
	// appInstances lists a device's messaging app instances still in force: each gets its own
	// session-revoked SET naming it with the device (app_wiring.go).
	appInstances func(ctx context.Context, deviceID string) []string
}

// emit turns changes into events and commits them with their audit entries.
func (r revocations) emit(ctx context.Context, changes []compliance.Change) {
	now := time.Now()
	var evs []events.Event
	var records []audit.Entry
	for _, c := range changes {
		devEvents := decisionEvents(c, now)
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
		err = r.store.Update(ctx, func(tx storage.Tx) error {
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

// causeKey carries, in the context of a device change, the command that caused it.
type causeKey struct{}

type cause struct{ deviceID, commandID string }

// causedBy marks ctx as the change commandID (a lock, lost mode or wipe, ordered or
// acknowledged) makes to deviceID: the security events of that device's change carry the
// command ID as their txn, so a backend can tie a revocation to the command behind it.
func causedBy(ctx context.Context, deviceID, commandID string) context.Context {
	return context.WithValue(ctx, causeKey{}, cause{deviceID, commandID})
}

// causeOf is the txn of a device's change: the command that caused it, or a new ID shared by
// the events of this one change (SSF: txn is unique to the underlying event).
func causeOf(ctx context.Context, deviceID string) string {
	if c, ok := ctx.Value(causeKey{}).(cause); ok && c.deviceID == deviceID && c.commandID != "" {
		return c.commandID
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return "chg_" + hex.EncodeToString(b)
}

// streamCaller is who calls the event stream API: the token, which owns the streams it
// creates; admin, security and auditor read every stream, and admin and security delete any.
func streamCaller(r *http.Request) events.Caller {
	t := tokens.FromContext(r.Context())
	if t == nil {
		return events.Caller{}
	}
	return events.Caller{
		ID:        t.ID,
		ReadAll:   t.Role == tokens.RoleAdmin || t.Role == tokens.RoleSecurity || t.Role == tokens.RoleAuditor,
		DeleteAll: t.Role == tokens.RoleAdmin || t.Role == tokens.RoleSecurity,
	}
}

// decisionEvents are the events one change calls for.
func decisionEvents(c compliance.Change, now time.Time) []events.Event {
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

// audited records action in the audit log with the outcome h answered, and the stream the
// request named as its target: for the event stream API, which does not audit itself.
func (s *Server) audited(action string, h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r, stream := events.TrackStream(r)
		h.ServeHTTP(w, r)
		status := httpmw.Status(w)
		outcome := audit.OutcomeOK
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			outcome = audit.OutcomeDenied
		case status >= 400:
			outcome = audit.OutcomeError
		}
		s.record(r, event{Action: action, Target: stream(), Outcome: outcome,
			Details: map[string]string{"status": strconv.Itoa(status)}})
	}
}
