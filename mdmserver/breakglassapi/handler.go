// Package breakglassapi serves emergency access (break-glass) over HTTP: the device's owner
// starts it with the device's own credential (POST /agent/v1/break-glass), a security person
// grants it for a device, lists the uses and reviews each (/api/v1/break-glass). The rules are
// package breakglass's.
package breakglassapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/posture"
)

// maxBody bounds a request: a reason of 1000 characters fits many times over.
const maxBody = 16 << 10

// Handler serves the routes.
type Handler struct {
	Service *breakglass.Service
	// Devices resolves the grant route's device (a Hale ID, or an Apple UDID or enrollment ID).
	Devices httpapi.DeviceLookup
	Log     *slog.Logger
	// Now is the clock "active" and "overdue" are judged by.
	Now func() time.Time
}

// Device is POST /agent/v1/break-glass: the device's owner, with the device's certificate
// (the route's device check puts the device in the context), opens emergency access for this
// device only.
func (h *Handler) Device(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	if d == nil {
		problem.Error(w, r, http.StatusUnauthorized, "unauthorized", "a device certificate is required")
		return
	}
	h.start(w, r, d.ID, breakglass.ChannelDevice)
}

// Grant is POST /api/v1/devices/{id}/break-glass: a security person opens emergency access for
// a device (a clinician who cannot reach their own device's page).
func (h *Handler) Grant(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	h.start(w, r, d.ID, breakglass.ChannelSecurity)
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request, deviceID, channel string) {
	var req api.BreakGlassRequest
	if !problem.DecodeJSON(w, r, maxBody, &req) {
		return
	}
	var dur time.Duration
	if req.Duration != "" {
		var err error
		if dur, err = time.ParseDuration(req.Duration); err != nil || dur <= 0 {
			problem.Error(w, r, http.StatusBadRequest, breakglass.RefusedTooLong, "duration must be a positive Go duration such as 2h")
			return
		}
	}
	u, err := h.Service.Start(r.Context(), breakglass.Request{DeviceID: deviceID, Reason: req.Reason, Duration: dur,
		Channel: channel, Entry: httpapi.Entry(r, httpapi.Event{})})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, View(u, h.now()))
}

// List is GET /api/v1/break-glass?device=ID&unreviewed=true&older_than=24h: the uses, oldest
// first; unreviewed with older_than lists those awaiting review longer than that (default
// 24h: the overdue ones).
func (h *Handler) List(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := breakglass.Filter{DeviceID: q.Get("device")}
	switch q.Get("unreviewed") {
	case "", "false":
	case "true":
		f.Unreviewed, f.OlderThan = true, breakglass.ReviewDue
	default:
		problem.BadRequest(w, r, "unreviewed must be true or false")
		return
	}
	if s := q.Get("older_than"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || !f.Unreviewed {
			problem.BadRequest(w, r, "older_than is a duration such as 24h, with unreviewed=true")
			return
		}
		f.OlderThan = d
	}
	if len(f.DeviceID) > 128 {
		problem.BadRequest(w, r, "device is not a device ID")
		return
	}
	uses, err := h.Service.List(r.Context(), f)
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.BreakGlassList{Uses: make([]api.BreakGlassUse, len(uses))}
	for i, u := range uses {
		out.Uses[i] = View(u, h.now())
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Get is GET /api/v1/break-glass/{id}.
func (h *Handler) Get(w http.ResponseWriter, r *http.Request) {
	u, err := h.Service.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, View(u, h.now()))
}

// Review is POST /api/v1/break-glass/{id}/review {"decision": "approved"|"revoked", "note"}:
// a security person other than the use's user and granter reviews it; revoked ends it at once.
func (h *Handler) Review(w http.ResponseWriter, r *http.Request) {
	var req api.BreakGlassReviewRequest
	if !problem.DecodeJSON(w, r, maxBody, &req) {
		return
	}
	if req.Decision != breakglass.ReviewApproved && req.Decision != breakglass.ReviewRevoked {
		problem.BadRequest(w, r, "decision must be approved or revoked")
		return
	}
	u, err := h.Service.Review(r.Context(), r.PathValue("id"), req.Decision, strings.TrimSpace(req.Note), httpapi.Entry(r, httpapi.Event{}))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, View(u, h.now()))
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// statuses of the refusals; 403 unless listed.
var statuses = map[string]int{
	breakglass.RefusedNotDenied: http.StatusConflict, breakglass.RefusedActive: http.StatusConflict,
	breakglass.RefusedReviewed: http.StatusConflict, breakglass.RefusedLimit: http.StatusTooManyRequests,
	breakglass.RefusedTooLong: http.StatusBadRequest, breakglass.RefusedNoReason: http.StatusBadRequest,
	breakglass.RefusedUnknownState: http.StatusNotFound,
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ref *breakglass.Refusal
	switch {
	case errors.As(err, &ref):
		status, ok := statuses[ref.Code]
		if !ok {
			status = http.StatusForbidden
		}
		p := problem.New(status, ref.Code, ref.Detail)
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(ref.RetryAfter.Seconds()))))
		}
		if len(ref.Reasons) > 0 {
			reasons := make([]posture.Reason, len(ref.Reasons))
			for i, c := range ref.Reasons {
				reasons[i] = posture.Reason{Code: c}
			}
			p.Reasons = reasons
		}
		problem.Write(w, r, p)
	case errors.Is(err, breakglass.ErrNotFound):
		problem.NotFound(w, r, "no break-glass use has this ID")
	default:
		httpapi.Internal(h.Log, w, r, err)
	}
}

// View is u as the API shows it at now.
func View(u *breakglass.Use, now time.Time) api.BreakGlassUse {
	v := api.BreakGlassUse{
		ID: u.ID, DeviceID: u.DeviceID, Person: u.Person, Reason: u.Reason, RequestedBy: u.RequestedBy, Channel: u.Channel,
		GrantedBy: u.GrantedBy, Overrides: u.Overrides, Policy: u.Policy, PolicyVersion: u.PolicyVersion,
		StartedAt: u.StartedAt, ExpiresAt: u.ExpiresAt, Active: u.Active(now), EndedAt: u.EndedAt, EndReason: u.EndReason,
		Overdue: breakglass.Overdue(u, now),
	}
	if v.Overrides == nil {
		v.Overrides = []string{}
	}
	if rv := u.Review; rv != nil {
		v.Review = &api.BreakGlassReview{Decision: rv.Decision, By: rv.By, At: rv.At, Note: rv.Note}
	}
	return v
}
