// Package httpapi holds what Hale's HTTP handler packages share, so that none of them copies it:
// the audit entry of a request (who, from where, which request), the answer to an internal
// error, the agent device a request authenticated as, and the device a route's {id} names.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpmw"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// Event describes one audited action of a request.
type Event struct {
	Action  string
	Target  string
	Outcome string // audit.OutcomeOK unless set
	Details map[string]string
}

// Auditor puts requests' actions on the audit record.
type Auditor struct {
	Log    *audit.Log
	Logger *slog.Logger
}

// Record appends ev, done by the caller of r, to the audit log in a unit of work of its own. A
// failure to audit is logged loudly and returned; an action that must not happen unaudited
// appends Entry(r, ev) with audit.Append in the action's own unit of work instead.
func (a Auditor) Record(r *http.Request, ev Event) error {
	_, err := a.Log.Append(context.WithoutCancel(r.Context()), Entry(r, ev))
	if err != nil {
		a.Logger.ErrorContext(r.Context(), "AUDIT APPEND FAILED", "action", ev.Action, "target", ev.Target, "err", err)
	}
	return err
}

// RecordForbidden puts a valid token's refused request on the audit record.
func (a Auditor) RecordForbidden(r *http.Request, t *tokens.Token) {
	target := r.Method + " " + r.URL.Path
	if len(target) > 200 {
		target = target[:200]
	}
	target = strings.ToValidUTF8(target, "?")
	_ = a.Record(r.WithContext(tokens.WithToken(r.Context(), t)), Event{Action: "auth.forbidden", Target: target, Outcome: audit.OutcomeDenied})
}

// Entry is the audit entry for ev done by the caller of r: the token and its person, or the
// agent device, the source address, and Hale's and the client's request IDs.
func Entry(r *http.Request, ev Event) audit.Entry {
	e := audit.Entry{
		Actor: "anonymous", Source: r.RemoteAddr, RequestID: httpmw.RequestID(r.Context()),
		ClientRequestID: httpmw.ClientRequestID(r.Context()), Action: ev.Action, Target: ev.Target, Outcome: ev.Outcome, Details: ev.Details,
	}
	if e.Outcome == "" {
		e.Outcome = audit.OutcomeOK
	}
	if t := tokens.FromContext(r.Context()); t != nil {
		e.Actor, e.Role, e.Person = "token:"+t.ID, string(t.Role), t.Person
		if e.Details == nil {
			e.Details = map[string]string{}
		}
		e.Details["token_name"] = t.Name
	} else if d := DeviceFrom(r.Context()); d != nil {
		e.Actor, e.Role = "device:"+d.ID, "device"
	}
	return e
}

// Actor names the caller of an admin request for logs and records: "<token name> (<token id>)".
func Actor(r *http.Request) string {
	if t := tokens.FromContext(r.Context()); t != nil {
		return t.Name + " (" + t.ID + ")"
	}
	return "anonymous"
}

// Internal logs err with the request ID and answers a generic 500: the details stay in the log.
func Internal(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	log.ErrorContext(r.Context(), "request failed", "err", err, "path", r.URL.Path,
		"request_id", w.Header().Get(problem.RequestIDHeader))
	problem.Internal(w, r)
}

type deviceKey struct{}

// WithDevice returns ctx carrying the agent device a request authenticated as.
func WithDevice(ctx context.Context, d *inventory.Device) context.Context {
	return context.WithValue(ctx, deviceKey{}, d)
}

// DeviceFrom returns the agent device a request authenticated as, or nil.
func DeviceFrom(ctx context.Context) *inventory.Device {
	d, _ := ctx.Value(deviceKey{}).(*inventory.Device)
	return d
}

// DeviceLookup reads devices for routes that name one.
type DeviceLookup interface {
	Get(ctx context.Context, id string) (*inventory.Device, error)
	GetByEnrollmentID(ctx context.Context, eid string) (*inventory.Device, error)
}

// DeviceFor resolves a route's {id} (a Hale device ID, or an Apple UDID / enrollment ID) to its
// inventory record, answering 400, 404 or 500 itself when it cannot.
func DeviceFor(inv DeviceLookup, log *slog.Logger, w http.ResponseWriter, r *http.Request) (*inventory.Device, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		problem.BadRequest(w, r, "invalid device id")
		return nil, false
	}
	d, err := inv.Get(r.Context(), id)
	if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
		d, err = inv.GetByEnrollmentID(r.Context(), id)
	}
	if errors.Is(err, inventory.ErrNotFound) || errors.Is(err, inventory.ErrInvalid) {
		problem.NotFound(w, r, "no device "+id)
		return nil, false
	} else if err != nil {
		Internal(log, w, r, err)
		return nil, false
	}
	return d, true
}

// QueryInt reads the integer query parameter name: 0 when it is absent. A value that is not a
// whole number of at least min is answered 400 (ok false), rather than silently taken as the
// default: a client sending junk learns it at once.
func QueryInt(w http.ResponseWriter, r *http.Request, name string, min int64) (n int64, ok bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min {
		problem.BadRequest(w, r, fmt.Sprintf("%s must be a whole number of at least %d", name, min))
		return 0, false
	}
	return n, true
}
