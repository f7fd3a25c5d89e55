package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/security"
)

// ApprovalList lists the two-person rule's requests (an *approvals.Service).
type ApprovalList interface {
	List(ctx context.Context, state string) ([]approvals.Request, error)
}

// Approvals serves /api/v1/approvals: the wipes held under the two-person rule, and their
// decision by a second person (package security carries an approved wipe out).
type Approvals struct {
	// Requests lists the requests.
	Requests ApprovalList
	// Service decides them.
	Service *security.Service
	// Log receives internal errors.
	Log *slog.Logger
}

// List is GET /api/v1/approvals?state=pending|approved|rejected|expired, newest first.
func (h *Approvals) List(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "", approvals.StatePending, approvals.StateApproved, approvals.StateRejected, approvals.StateExpired:
	default:
		problem.BadRequest(w, r, "state must be pending, approved, rejected or expired")
		return
	}
	list, err := h.Requests.List(r.Context(), state)
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.Approvals{Approvals: make([]api.Approval, len(list))}
	for i := range list {
		out.Approvals[i] = approvalView(&list[i])
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Decide is POST /api/v1/approvals/{id} {"decision": "approve"|"reject", "comment": "..."}: a
// second person holding a security token decides a held wipe; on approval it is carried out at
// once (security.Service.Decide says who may decide).
func (h *Approvals) Decide(w http.ResponseWriter, r *http.Request) {
	var req api.ApprovalDecision
	if !problem.DecodeJSON(w, r, maxSecurityBody, &req) {
		return
	}
	if req.Decision == "" {
		req.Decision = "approve"
	}
	if (req.Decision != "approve" && req.Decision != "reject") || len(req.Comment) > 500 {
		problem.BadRequest(w, r, "decision must be approve or reject; comment at most 500 characters")
		return
	}
	id := r.PathValue("id")
	decided, err := h.Service.Decide(r.Context(), actorOf(r), id, req.Decision == "approve", req.Comment)
	switch {
	case err == nil:
		httpjson.Write(w, http.StatusOK, api.ApprovalDecided{Approval: approvalView(decided.Request), Command: decided.Command})
	case errors.Is(err, approvals.ErrNotFound):
		problem.NotFound(w, r, "no approval request "+id)
	case errors.Is(err, approvals.ErrSamePerson):
		problem.Error(w, r, http.StatusForbidden, "same-person", "two-person rule: "+strings.TrimPrefix(err.Error(), "approvals: ")+
			"; another person, holding a security token, must decide it")
	case errors.Is(err, approvals.ErrCreator):
		problem.Error(w, r, http.StatusForbidden, "token-creator", "two-person rule: "+strings.TrimPrefix(err.Error(), "approvals: ")+
			"; whoever made a token could have made it for themselves, so another person must decide it")
	case errors.Is(err, approvals.ErrDecided), errors.Is(err, approvals.ErrExpired):
		problem.Error(w, r, http.StatusConflict, "approval-closed", err.Error())
	default:
		refused(h.Log, w, r, err)
	}
}

// approvalView is the wire form of a request; its parameters are never shown.
func approvalView(a *approvals.Request) api.Approval {
	return api.Approval{
		ID: a.ID, Action: a.Action, DeviceID: a.DeviceID, Group: a.Group, Reason: a.Reason, Mode: a.Mode, State: a.State,
		RequestedBy: a.RequestedBy, RequesterTokenID: a.RequesterTokenID, RequesterPerson: a.RequesterPerson,
		RequesterCreators: a.RequesterCreators, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt,
		DecidedBy: a.DecidedBy, DeciderTokenID: a.DeciderTokenID, DeciderPerson: a.DeciderPerson, DecidedAt: a.DecidedAt,
		Comment: a.Comment, CommandID: a.CommandID,
	}
}
