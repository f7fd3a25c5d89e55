package mdmserver

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/posture"
)

// emitDecisionChanges tells the backends, by Security Event Tokens, that devices' decisions
// changed: session-revoked when a device may no longer open sessions (locked, lost, wipe
// ordered, wiped, unenrolled, or noncompliant past grace), and device-compliance-change when
// its compliance flipped. It runs as the compliance change hook, after the changes committed;
// their events are committed to the outbox, in one transaction, before it returns.
func (s *Server) emitDecisionChanges(ctx context.Context, changes []compliance.Change) {
	now := time.Now()
	var evs []events.Event
	for _, c := range changes {
		evs = append(evs, decisionEvents(c, now)...)
	}
	if len(evs) == 0 {
		return
	}
	if err := s.events.Emit(context.WithoutCancel(ctx), evs...); err != nil {
		s.log.ErrorContext(ctx, "security events not emitted", "devices", len(changes), "err", err)
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

// audited records action in the audit log with the outcome h answered: for handlers of other
// packages (the event stream API) that do not audit themselves.
func (s *Server) audited(action string, h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		status := httpmw.Status(w)
		outcome := audit.OutcomeOK
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			outcome = audit.OutcomeDenied
		case status >= 400:
			outcome = audit.OutcomeError
		}
		s.record(r, event{Action: action, Target: r.PathValue("id"), Outcome: outcome,
			Details: map[string]string{"status": strconv.Itoa(status)}})
	}
}
