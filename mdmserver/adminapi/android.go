package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// AndroidBinder binds Hale to an Android Management API enterprise (the Android service,
// adapted by the composition). Refusals are *problem.Details.
type AndroidBinder interface {
	Bind(ctx context.Context, req api.AndroidBindRequest, by audit.Entry) (*api.AndroidBinding, error)
	// Binding returns the binding, or nil when none.
	Binding(ctx context.Context) (*api.AndroidBinding, error)
	// Signup starts creating a new enterprise.
	Signup(ctx context.Context, req api.AndroidSignupRequest) (*api.AndroidSignup, error)
}

// AndroidEnroller makes the Android Management API enrollment token of a Hale enrollment.
// Refusals are *problem.Details.
type AndroidEnroller interface {
	Enroll(ctx context.Context, e *enroll.Enrollment, token string, byod bool) (*api.AndroidEnrollment, error)
}

// maxBindBody bounds PUT /api/v1/android/binding: a key file is about 2.3 KiB.
const maxBindBody = 32 << 10

// Android serves /api/v1/android/binding.
type Android struct {
	Binder AndroidBinder
	Log    *slog.Logger
}

// Bind is PUT /api/v1/android/binding (admin): {enterprise, topic, service_account_key} → the
// binding. The key is checked, used to read the enterprise and set its notifications, then
// stored sealed; the binding is audited in the same commit.
func (h *Android) Bind(w http.ResponseWriter, r *http.Request) {
	var req api.AndroidBindRequest
	if !problem.DecodeJSON(w, r, maxBindBody, &req) {
		return
	}
	b, err := h.Binder.Bind(r.Context(), req, httpapi.Entry(r, httpapi.Event{}))
	if err != nil {
		problemOr(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, b)
}

// Signup is POST /api/v1/android/signup (admin): {service_account_key, admin_email} → the
// signup page that creates a new enterprise; nothing is stored until the binding.
func (h *Android) Signup(w http.ResponseWriter, r *http.Request) {
	var req api.AndroidSignupRequest
	if !problem.DecodeJSON(w, r, maxBindBody, &req) {
		return
	}
	out, err := h.Binder.Signup(r.Context(), req)
	if err != nil {
		problemOr(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Get is GET /api/v1/android/binding.
func (h *Android) Get(w http.ResponseWriter, r *http.Request) {
	b, err := h.Binder.Binding(r.Context())
	switch {
	case err != nil:
		problemOr(h.Log, w, r, err)
	case b == nil:
		problem.NotFound(w, r, "no Android enterprise is bound; PUT /api/v1/android/binding")
	default:
		httpjson.Write(w, http.StatusOK, b)
	}
}

// problemOr answers a *problem.Details as it is, anything else as an internal error.
func problemOr(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	var pd *problem.Details
	if errors.As(err, &pd) {
		problem.Write(w, r, pd)
		return
	}
	httpapi.Internal(log, w, r, err)
}
