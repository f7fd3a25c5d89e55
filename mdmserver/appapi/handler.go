// Package appapi serves the messaging app's API (/app/v1: nonce, register, report) and IT's
// routes for it (binding tokens and the list of a device's app instances), on the appinstances
// service.
package appapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/appinstances"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
)

// maxBody bounds the app's requests: the largest is a registration with an App Attest
// attestation (32 KiB) in base64.
const maxBody = 64 << 10

// Handler serves the routes.
type Handler struct {
	Service *appinstances.Service
	Devices httpapi.DeviceLookup
	Tokens  Tokens
	// Deliver sends a binding token to the app on a managed Apple device as its managed app
	// configuration and answers the command's ID; a *appinstances.Refusal when it cannot.
	Deliver func(ctx context.Context, d *inventory.Device, token, requestedBy string) (string, error)
	// Gate rate-limits registrations per source and tallies their refusals (the enrollment
	// endpoints' gate: a refused attestation goes on the audit record in its source's
	// summary); nil admits all.
	Gate Gate
	Log  *slog.Logger
	// Links makes a device's my-device page link (nil: POST /app/v1/my-device-link is 404).
	Links func(deviceID string) api.MyDeviceLink
}

// Gate is httpapi.EnrollEndpoint as registration uses it.
type Gate interface {
	Admit(w http.ResponseWriter, r *http.Request) bool
	Refused(r *http.Request, reason string)
}

// Nonce answers POST /app/v1/nonce.
func (h *Handler) Nonce(w http.ResponseWriter, r *http.Request) {
	n, exp := h.Service.Nonce()
	httpjson.Write(w, http.StatusOK, api.AppNonceAnswer{Nonce: n, ExpiresAt: exp})
}

// Register answers POST /app/v1/register.
func (h *Handler) Register(w http.ResponseWriter, r *http.Request) {
	if h.Gate != nil && !h.Gate.Admit(w, r) {
		return
	}
	var req api.AppRegisterRequest
	if !problem.DecodeJSON(w, r, maxBody, &req) {
		return
	}
	in, err := h.Service.Register(r.Context(), req, httpapi.Entry(r, httpapi.Event{}))
	if err != nil {
		var ref *appinstances.Refusal
		if h.Gate != nil && errors.As(err, &ref) {
			h.Gate.Refused(r, ref.Code)
		}
		h.refused(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, api.AppRegisterAnswer{InstanceID: in.ID, DeviceID: in.DeviceID, Platform: string(in.Platform)})
}

// Report answers POST /app/v1/report.
func (h *Handler) Report(w http.ResponseWriter, r *http.Request) {
	var req api.AppReportRequest
	if !problem.DecodeJSON(w, r, maxBody, &req) {
		return
	}
	e := httpapi.Entry(r, httpapi.Event{})
	e.Actor, e.Role = "app:"+req.InstanceID, "app"
	in, err := h.Service.Report(r.Context(), req, e)
	if err != nil {
		h.refused(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, api.AppReportAnswer{InstanceID: in.ID, DeviceID: in.DeviceID, Claims: Claims(in.Posture)})
}

// CreateBinding answers POST /api/v1/devices/{id}/app-bindings.
func (h *Handler) CreateBinding(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	var req api.AppBindingRequest
	if r.ContentLength != 0 && !problem.DecodeJSON(w, r, 1<<10, &req) {
		return
	}
	ttl := 24 * time.Hour
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			problem.BadRequest(w, r, "ttl: "+err.Error())
			return
		}
	}
	if req.Deliver {
		if err := h.Service.CanDeliver(d); err != nil {
			h.refused(w, r, err)
			return
		}
	}
	tok, exp, err := h.Service.IssueBinding(r.Context(), d, ttl, httpapi.Entry(r, httpapi.Event{}))
	if err != nil {
		h.refused(w, r, err)
		return
	}
	ans := api.AppBindingAnswer{Token: tok, DeviceID: d.ID, ExpiresAt: exp}
	if req.Deliver {
		if ans.CommandID, err = h.Deliver(r.Context(), d, tok, httpapi.Actor(r)); err != nil {
			h.refused(w, r, err)
			return
		}
	}
	httpjson.Write(w, http.StatusCreated, ans)
}

// ListInstances answers GET /api/v1/devices/{id}/app-instances.
func (h *Handler) ListInstances(w http.ResponseWriter, r *http.Request) {
	d, ok := httpapi.DeviceFor(h.Devices, h.Log, w, r)
	if !ok {
		return
	}
	ins, err := h.Service.Instances(r.Context(), d.ID)
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.AppInstances{Instances: []api.AppInstance{}}
	for _, in := range ins {
		a := api.AppInstance{
			ID: in.ID, Platform: string(in.Platform), DeviceID: in.DeviceID, KeyID: in.KeyID,
			Environment: in.Environment, RegisteredAt: in.RegisteredAt, Claims: Claims(in.Posture),
			RevokedReason: in.RevokedReason,
		}
		if !in.LastReportAt.IsZero() {
			a.LastReportAt = &in.LastReportAt
		}
		if in.Revoked() {
			a.RevokedAt = &in.RevokedAt
		}
		out.Instances = append(out.Instances, a)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// refused answers a service error: a refusal with its code and status, anything else 500.
func (h *Handler) refused(w http.ResponseWriter, r *http.Request, err error) {
	var ref *appinstances.Refusal
	if !errors.As(err, &ref) {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, appinstances.ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, appinstances.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, appinstances.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, appinstances.ErrUnavailable):
		status = http.StatusNotImplemented
	}
	h.Log.InfoContext(r.Context(), "app request refused", "path", r.URL.Path, "code", ref.Code, "detail", ref.Detail)
	problem.Error(w, r, status, ref.Code, ref.Detail)
}

// Claims is a posture as the API shows it, keyed by claim.
func Claims(p *appinstances.Posture) map[string]api.AppClaim {
	out := map[string]api.AppClaim{}
	if p == nil {
		return out
	}
	addBool := func(k string, c *policies.Claim[bool]) {
		if c != nil {
			out[k] = api.AppClaim{Value: c.Value, Source: string(c.Source), ObservedAt: c.ObservedAt}
		}
	}
	addString := func(k string, c *policies.Claim[string]) {
		if c != nil {
			out[k] = api.AppClaim{Value: c.Value, Source: string(c.Source), ObservedAt: c.ObservedAt}
		}
	}
	addBool("app_attested", p.Attested)
	addBool("passcode_set", p.PasscodeSet)
	addBool("jailbroken", p.Jailbroken)
	addBool("screen_captured", p.ScreenCaptured)
	addString("app_version", p.AppVersion)
	addString("os_version", p.OSVersion)
	return out
}
