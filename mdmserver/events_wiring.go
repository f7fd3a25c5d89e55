package mdmserver

import (
	"context"
	"net/http"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

// adminStates are the states only an administrator's action puts a device in.
var adminStates = map[string]bool{
	"locked": true, "lost": true, "wipe_pending": true, "wiped": true, "unenrolled": true, "retired": true,
}

// emitDecisionChange tells the backends, by Security Event Tokens, that a device's decision
// changed: session-revoked when it may no longer open sessions (locked, lost, wipe ordered,
// wiped, unenrolled, or noncompliant past grace), and device-compliance-change when its
// compliance flipped. It runs as a compliance change hook, after the change committed; the
// events are committed to the outbox before it returns.
func (s *Server) emitDecisionChange(ctx context.Context, deviceID string, old, new access.Decision) {
	now := time.Now()
	was, is := old.Answer(now), new.Answer(now)
	var evs []events.Event
	initiator := "policy"
	if adminStates[new.State] && new.State != old.State {
		initiator = "admin"
	}
	first := func(a access.Answer) (code, detail string) {
		if len(a.Reasons) > 0 {
			return a.Reasons[0].Code, a.Reasons[0].Detail
		}
		return "", ""
	}
	if was.Compliant != is.Compliant {
		code, detail := first(is)
		evs = append(evs, events.Event{
			Type: posture.EventComplianceChange, DeviceID: deviceID, At: now, Initiator: "policy",
			PreviousStatus: complianceStatus(was.Compliant), CurrentStatus: complianceStatus(is.Compliant),
			ReasonCode: code, ReasonDetail: detail,
		})
	}
	if !is.Allow && (was.Allow || new.State != old.State) {
		code, detail := first(is)
		evs = append(evs, events.Event{
			Type: posture.EventSessionRevoked, DeviceID: deviceID, At: now, Initiator: initiator,
			ReasonCode: code, ReasonDetail: detail,
		})
	}
	if len(evs) == 0 {
		return
	}
	if err := s.events.Emit(context.WithoutCancel(ctx), evs...); err != nil {
		s.log.ErrorContext(ctx, "security events not emitted", "device_id", deviceID, "err", err)
	}
}

func complianceStatus(compliant bool) string {
	if compliant {
		return "compliant"
	}
	return "not-compliant"
}

// audited records action in the audit log when h answers a success: for handlers of other
// packages (the event stream API) that do not audit themselves.
func (s *Server) audited(action string, h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		outcome := audit.OutcomeOK
		switch {
		case sw.status == http.StatusUnauthorized || sw.status == http.StatusForbidden:
			outcome = audit.OutcomeDenied
		case sw.status >= 400:
			outcome = audit.OutcomeError
		}
		s.record(r, event{Action: action, Target: r.PathValue("id"), Outcome: outcome,
			Details: map[string]string{"status": http.StatusText(sw.status)}})
	}
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
