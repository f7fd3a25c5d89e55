package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// order is POST /console/devices/{id}/{lock,lost-mode,wipe}: the person types the device's ID
// to confirm and gives a reason; the security service does the rest exactly as for the JSON API
// (the two-person rule holds a wipe for a second approver). The form's one-time key is the
// Idempotency-Key, so a double submission orders once.
func (c *Console) order(action security.Action) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		id := r.PathValue("id")
		d, err := c.lookup(r, id)
		if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
			c.errorPage(w, r, ss, http.StatusNotFound, "No device "+id+".")
			return
		} else if err != nil {
			c.internal(w, r, ss, err)
			return
		}
		back := Prefix + "devices/" + url.PathEscape(d.ID)
		f := r.PostForm
		if strings.TrimSpace(f.Get("confirm")) != d.ID {
			c.flashAndRedirect(w, r, ss, "error", "Not done: type the device ID "+d.ID+" exactly to confirm the "+string(action)+".", back)
			return
		}
		req := api.SecurityRequest{Reason: strings.TrimSpace(f.Get("reason")), Mode: f.Get("mode"),
			Message: f.Get("message"), PhoneNumber: f.Get("phone_number")}
		if err := security.Validate(action, &req); err != nil {
			c.flashAndRedirect(w, r, ss, "error", "Not done: "+refusalText(err), back)
			return
		}
		var idem idempotency.Key
		if k := f.Get("idem"); k != "" && len(k) <= idempotency.MaxKeyLen {
			idem = idempotency.NewKey(tokens.FromContext(r.Context()).ID, r.URL.Path, k)
		}
		ans, err := c.deps.Security.Order(r.Context(), adminapi.ActorOf(r), d.ID, action, req, idem)
		if err != nil {
			if !isRefusal(err) {
				c.internal(w, r, ss, err)
				return
			}
			c.flashAndRedirect(w, r, ss, "error", "Refused: "+refusalText(err), back)
			return
		}
		msg := string(action) + " ordered: command " + ans.CommandID + ", state " + ans.State + "; the device is now treated as " + ans.DeviceState + "."
		if ans.State == api.StatePendingApproval {
			msg = "Wipe held under the two-person rule: a second person with the security role must approve it on the Approvals page (request " +
				ans.ApprovalID + ", expires " + ans.ExpiresAt.UTC().Format("2006-01-02 15:04Z") + ")."
		}
		if ans.Effect != "" {
			msg += " " + ans.Effect
		}
		c.flashAndRedirect(w, r, ss, "ok", msg, back)
	}
}

func isRefusal(err error) bool {
	var ref *security.Refusal
	return errors.As(err, &ref)
}

// refusalText is what the security service said, without its package prefix.
func refusalText(err error) string {
	var ref *security.Refusal
	if errors.As(err, &ref) {
		return ref.Detail
	}
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), "security: "), "approvals: ")
}

type approvalsPage struct {
	Pending   []api.Approval
	Recent    []api.Approval
	CanDecide bool
}

// approvalList is GET /console/approvals: wipes awaiting a second approver, and the latest
// decided ones.
func (c *Console) approvalList(w http.ResponseWriter, r *http.Request, ss *session) {
	list, err := c.deps.Approvals.List(r.Context(), "")
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	p := approvalsPage{CanDecide: c.may(tokens.FromContext(r.Context()), "POST /api/v1/approvals/{id}")}
	for i := range list {
		a := adminapi.ApprovalView(&list[i])
		if a.State == approvals.StatePending {
			p.Pending = append(p.Pending, a)
		} else if len(p.Recent) < 50 {
			p.Recent = append(p.Recent, a)
		}
	}
	c.renderTitled(w, r, http.StatusOK, "approvals", "Approvals", ss, p)
}

// decide is POST /console/approvals/{id}: approve (the wipe is sent at once) or reject, under
// the same two-person rule as the JSON API.
func (c *Console) decide(w http.ResponseWriter, r *http.Request, ss *session) {
	back := Prefix + "approvals"
	id, decision, comment := r.PathValue("id"), r.PostForm.Get("decision"), r.PostForm.Get("comment")
	if (decision != "approve" && decision != "reject") || len(comment) > 500 || len(id) > 128 {
		c.flashAndRedirect(w, r, ss, "error", "Not done: decide approve or reject; a comment is at most 500 characters.", back)
		return
	}
	decided, err := c.deps.Security.Decide(r.Context(), adminapi.ActorOf(r), id, decision == "approve", comment)
	switch {
	case err == nil:
		msg := "Request " + id + " " + decided.Request.State + "."
		if decided.Command != nil {
			msg += " Wipe sent: command " + decided.Command.CommandID + "; the device is now treated as " + decided.Command.DeviceState + "."
		}
		c.flashAndRedirect(w, r, ss, "ok", msg, back)
	case errors.Is(err, approvals.ErrNotFound):
		c.flashAndRedirect(w, r, ss, "error", "No approval request "+id+".", back)
	case errors.Is(err, approvals.ErrSamePerson), errors.Is(err, approvals.ErrCreator):
		c.flashAndRedirect(w, r, ss, "error", "Two-person rule: "+refusalText(err)+"; another person with the security role must decide it.", back)
	case errors.Is(err, approvals.ErrDecided), errors.Is(err, approvals.ErrExpired), isRefusal(err):
		c.flashAndRedirect(w, r, ss, "error", "Not done: "+refusalText(err)+".", back)
	default:
		c.internal(w, r, ss, err)
	}
}
