package adminapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// maxSecurityBody bounds the body of a security order or an approval decision.
const maxSecurityBody = 16 << 10

// Security serves the security operations on a device: lock, lost mode, wipe, the PIN of a
// Mac's lock or erase, and unenroll. The operations themselves are package security's.
type Security struct {
	// Devices resolves the route's {id}.
	Devices httpapi.DeviceLookup
	// Service carries the operations out.
	Service *security.Service
	// Log receives internal errors.
	Log *slog.Logger
}

// Lock is POST /api/v1/devices/{id}/lock.
func (h *Security) Lock(w http.ResponseWriter, r *http.Request) { h.order(w, r, security.Lock) }

// LostMode is POST /api/v1/devices/{id}/lost-mode.
func (h *Security) LostMode(w http.ResponseWriter, r *http.Request) {
	h.order(w, r, security.LostMode)
}

// Wipe is POST /api/v1/devices/{id}/wipe; a wipe under the two-person rule is held for a second
// approver (state pending_approval).
func (h *Security) Wipe(w http.ResponseWriter, r *http.Request) { h.order(w, r, security.Wipe) }

// order answers lock, lost mode and wipe: 202 with api.SecurityAnswer. An Idempotency-Key
// belongs to the caller's token and the route.
func (h *Security) order(w http.ResponseWriter, r *http.Request, action security.Action) {
	var req api.SecurityRequest
	if !problem.DecodeJSON(w, r, maxSecurityBody, &req) {
		return
	}
	if err := security.Validate(action, &req); err != nil {
		refused(h.Log, w, r, err)
		return
	}
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	var idem idempotency.Key
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > idempotency.MaxKeyLen {
			problem.BadRequest(w, r, "Idempotency-Key is at most 128 characters")
			return
		}
		owner := ""
		if t := tokens.FromContext(r.Context()); t != nil {
			owner = t.ID
		}
		idem = idempotency.NewKey(owner, r.URL.Path, key)
	}
	ans, err := h.Service.Order(r.Context(), actorOf(r), d.ID, action, req, idem)
	if err != nil {
		refused(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusAccepted, ans)
}

// PIN is GET /api/v1/devices/{id}/commands/{uuid}/pin (security): the PIN that unlocks a Mac
// after a lock or erase. Every reading is audited.
func (h *Security) PIN(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	uuid := r.PathValue("uuid")
	pin, err := h.Service.PIN(r.Context(), actorOf(r), d, uuid)
	if err != nil {
		refused(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.CommandPIN{PIN: pin, CommandID: uuid})
}

// Unenroll is DELETE /api/v1/devices/{id}: every certificate of the device is revoked, so it can
// no longer talk to the server, and its state becomes unenrolled. The answer is the device.
func (h *Security) Unenroll(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	d, err := h.Service.Unenroll(r.Context(), actorOf(r), d)
	if err != nil {
		refused(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, d)
}

// actorOf is the caller of r as the security service records it.
func actorOf(r *http.Request) security.Actor {
	return security.Actor{Audit: httpapi.Entry(r, httpapi.Event{}), Token: tokens.FromContext(r.Context()), Name: httpapi.Actor(r)}
}

// refusals are the answers to the security service's refusals, by kind (the codes of
// problem.BadRequest and problem.NotFound for the first two).
var refusals = []struct {
	kind   error
	status int
	code   string
}{
	{security.ErrInvalid, http.StatusBadRequest, "invalid-request"},
	{security.ErrNotFound, http.StatusNotFound, "not-found"},
	{security.ErrInvalidState, http.StatusConflict, "invalid-state"},
	{security.ErrWipePending, http.StatusConflict, "wipe-pending"},
	{security.ErrApprovalPending, http.StatusConflict, "approval-pending"},
	{security.ErrNotEligible, http.StatusForbidden, "not-eligible"},
	{security.ErrUpstream, http.StatusBadGateway, "upstream-failed"},
}

// refused answers a security.Refusal with its status and problem type, anything else as an
// internal error.
func refused(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	var ref *security.Refusal
	if errors.As(err, &ref) {
		for _, a := range refusals {
			if errors.Is(ref, a.kind) {
				problem.Error(w, r, a.status, a.code, ref.Detail)
				return
			}
		}
	}
	httpapi.Internal(log, w, r, err)
}
