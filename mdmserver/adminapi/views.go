package adminapi

import (
	"net/http"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/security"
)

// The wire forms and the caller this package's handlers use, exported for the web console
// (package console), which renders the same api types from the same services: one conversion,
// not two.

// ApprovalView is the wire form of a two-person rule request, as GET /api/v1/approvals shows it.
func ApprovalView(a *approvals.Request) api.Approval { return approvalView(a) }

// AppleCommandView is the wire form of an Apple command's record, as the command routes show it.
func AppleCommandView(rec *commands.Record) api.AppleCommand { return appleCommand(rec) }

// EnrollmentView is the wire form of an enrollment, as GET /api/v1/enrollments shows it.
func EnrollmentView(e *enroll.Enrollment) api.Enrollment { return enrollment(e) }

// ActorOf is the caller of r as the security service records it; r's context carries the
// caller's token (tokens.WithToken).
func ActorOf(r *http.Request) security.Actor { return actorOf(r) }

// AssignEach assigns policy to every target for the caller of r, each on the record, then
// re-evaluates every device once: the console's bulk assignment (AssignTo per target would
// re-evaluate the fleet per device). It stops at the first refusal and says how many were
// assigned before it.
func (h *Policies) AssignEach(r *http.Request, targets []compliance.Target, policy string) (int, error) {
	done := 0
	defer func() {
		if done > 0 {
			h.Changed.PoliciesChanged(r.Context())
		}
	}()
	for _, t := range targets {
		if err := h.Policies.Assign(r.Context(), t, policy); err != nil {
			return done, err
		}
		_ = h.Auditor.Record(r, httpapi.Event{Action: "policy.assign", Target: policy, Details: map[string]string{"kind": t.Kind, "name": t.Name}})
		done++
	}
	return done, nil
}
