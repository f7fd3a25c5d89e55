package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// DeviceReader lists and reads the device records (an *inventory.Service).
type DeviceReader interface {
	httpapi.DeviceLookup
	// List returns a page of the devices f selects, from cursor, and the next page's cursor;
	// inventory.ErrBadCursor for a cursor it did not make.
	List(ctx context.Context, f inventory.Filter, cursor string, limit int) ([]inventory.Device, string, error)
}

// Verdicts holds each device's compliance verdict and posture in memory (a *compliance.Engine).
type Verdicts interface {
	// Verdict returns the device's verdict and posture; ok is false for a device never
	// evaluated. The posture is shared: read-only.
	Verdict(deviceID string) (v policies.Verdict, p *policies.Posture, ok bool)
}

// AccessAnswers writes the access API's answer for a device (an *access.Index).
type AccessAnswers interface {
	WriteAnswer(w http.ResponseWriter, deviceID string)
}

// Devices serves the device routes that read: GET /api/v1/devices, /api/v1/devices/{id} and its
// access decision. A route's {id} is a Hale device ID or an Apple UDID.
type Devices struct {
	// Devices reads the records.
	Devices DeviceReader
	// Verdicts gives each device's verdict and posture.
	Verdicts Verdicts
	// Index answers as the access API would.
	Index AccessAnswers
	// Log receives internal errors.
	Log *slog.Logger
}

// List is GET /api/v1/devices?state=&group=&owner=&cursor=&limit=: a page of devices.
func (h *Devices) List(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := inventory.Filter{State: inventory.State(q.Get("state")), Group: q.Get("group"), Owner: q.Get("owner"),
		AgentOlderThan: q.Get("agent_older_than")}
	if f.State != "" && !f.State.Valid() {
		problem.BadRequest(w, r, "state must be one of active, locked, lost, wiped, unenrolled, retired")
		return
	}
	if err := f.Validate(); err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	limit, ok := httpapi.QueryInt(w, r, "limit", 1)
	if !ok {
		return
	}
	devs, next, err := h.Devices.List(r.Context(), f, q.Get("cursor"), int(min(limit, 1<<20)))
	if errors.Is(err, inventory.ErrBadCursor) {
		problem.BadRequest(w, r, "invalid cursor: pass next_cursor from the previous page unchanged")
		return
	} else if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.Devices{Devices: make([]api.Device, len(devs)), NextCursor: next}
	for i := range devs {
		out.Devices[i] = httpapi.Device(&devs[i])
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Get is GET /api/v1/devices/{id}: the record with its verdict (null until the device was
// first evaluated) and posture (null until it reported).
func (h *Devices) Get(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	out := api.DeviceDetail{Device: httpapi.Device(d)}
	if v, p, ok := h.Verdicts.Verdict(d.ID); ok {
		out.Verdict, out.Posture = &v, p
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Access is GET /api/v1/devices/{id}/access: the access API's answer for a device, for IT,
// security and auditors.
func (h *Devices) Access(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	h.Index.WriteAnswer(w, d.ID)
}
