package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/compliance"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// maxBulk bounds the devices of one bulk action: one page at most.
const maxBulk = maxPage

// bulkDevices reads the devices ticked on the list and the typed confirmation, which must be
// their count: a bulk action names how many devices it touches before it touches them.
func bulkDevices(r *http.Request) ([]string, string) {
	ids := r.PostForm["device"]
	switch {
	case len(ids) == 0:
		return nil, "Not done: tick the devices first."
	case len(ids) > maxBulk:
		return nil, "Not done: at most " + strconv.Itoa(maxBulk) + " devices at once."
	case strings.TrimSpace(r.PostForm.Get("confirm")) != strconv.Itoa(len(ids)):
		return nil, "Not done: type the number of devices ticked (" + strconv.Itoa(len(ids)) + ") to confirm."
	}
	for _, id := range ids {
		if id == "" || len(id) > 128 {
			return nil, "Not done: invalid device id."
		}
	}
	return ids, ""
}

// bulkLock is POST /console/devices/bulk-lock: each ticked device is locked through the
// security service exactly as one lock is (its own audit entry, its own Idempotency-Key from
// the form's one-time key), and the outcome of each is reported.
func (c *Console) bulkLock(w http.ResponseWriter, r *http.Request, ss *session) {
	back := Prefix + "devices"
	ids, bad := bulkDevices(r)
	if bad != "" {
		c.flashAndRedirect(w, r, ss, "error", bad, back)
		return
	}
	req := api.SecurityRequest{Reason: strings.TrimSpace(r.PostForm.Get("reason"))}
	if err := security.Validate(security.Lock, &req); err != nil {
		c.flashAndRedirect(w, r, ss, "error", "Not done: "+refusalText(err), back)
		return
	}
	t, key := tokens.FromContext(r.Context()), r.PostForm.Get("idem")
	var locked int
	var refused []string
	for _, id := range ids {
		var idem idempotency.Key
		if key != "" && len(key) <= idempotency.MaxKeyLen {
			idem = idempotency.NewKey(t.ID, r.URL.Path+"/"+id, key)
		}
		d, err := c.lookup(r, id)
		if err == nil {
			_, err = c.deps.Security.Order(r.Context(), adminapi.ActorOf(r), d.ID, security.Lock, req, idem)
		}
		switch {
		case err == nil:
			locked++
		case isRefusal(err) || d == nil:
			refused = append(refused, id+": "+refusalText(err))
		default:
			c.internal(w, r, ss, err)
			return
		}
	}
	msg := strconv.Itoa(locked) + " of " + strconv.Itoa(len(ids)) + " devices locked."
	kind := "ok"
	if len(refused) > 0 {
		kind, msg = "error", msg+" Refused: "+strings.Join(refused, "; ")
	}
	c.flashAndRedirect(w, r, ss, kind, msg, back)
}

// bulkAssign is POST /console/devices/bulk-assign: the chosen policy is assigned to each ticked
// device (a device assignment each, on the record), then every device is re-evaluated once.
func (c *Console) bulkAssign(w http.ResponseWriter, r *http.Request, ss *session) {
	back := Prefix + "devices"
	ids, bad := bulkDevices(r)
	if bad != "" {
		c.flashAndRedirect(w, r, ss, "error", bad, back)
		return
	}
	targets := make([]compliance.Target, 0, len(ids))
	for _, id := range ids {
		d, err := c.lookup(r, id)
		if err != nil {
			c.flashAndRedirect(w, r, ss, "error", "Not done: no device "+id+".", back)
			return
		}
		targets = append(targets, compliance.Target{Kind: compliance.TargetDevice, Name: d.ID})
	}
	policy := r.PostForm.Get("policy")
	n, err := c.deps.PolicyActions.AssignEach(r, targets, policy)
	if err != nil {
		c.flashAndRedirect(w, r, ss, "error", "Assigned to "+strconv.Itoa(n)+" of "+strconv.Itoa(len(ids))+" devices, then refused: "+err.Error(), back)
		return
	}
	c.flashAndRedirect(w, r, ss, "ok", "Policy "+policy+" assigned to "+strconv.Itoa(n)+" devices; every device was re-evaluated.", back)
}
