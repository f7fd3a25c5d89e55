package mdmserver

import (
	"net/http"
	"strconv"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/tokens"
)

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
		_ = s.auditor().Record(r, httpapi.Event{Action: action, Target: stream(), Outcome: outcome,
			Details: map[string]string{"status": strconv.Itoa(status)}})
	}
}
