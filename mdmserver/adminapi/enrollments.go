package adminapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// EnrollmentStore creates, lists and revokes one-time enrollments (an *enroll.Service).
type EnrollmentStore interface {
	Create(ctx context.Context, req enroll.Request) (e *enroll.Enrollment, token string, err error)
	List(ctx context.Context) ([]*enroll.Enrollment, error)
	Revoke(ctx context.Context, id string) (*enroll.Enrollment, error)
}

// Enrollments serves /api/v1/enrollments: the one-time tokens devices enroll with. The
// enrollment endpoints themselves are Apple MDM's (the profile) and the agent API's.
type Enrollments struct {
	// Enrollments keeps the enrollments.
	Enrollments EnrollmentStore
	// PublicURL is the server's address as devices reach it: an Apple enrollment's profile URL
	// starts with it.
	PublicURL string
	// Auditor records what is created and revoked.
	Auditor httpapi.Auditor
	// Log receives internal errors.
	Log *slog.Logger
	// Android makes the enrollment tokens of android enrollments; nil refuses them.
	Android AndroidEnroller
}

// Create is POST /api/v1/enrollments: {owner, group, platform, ttl} → 201 with the one-time
// token, shown only here.
func (h *Enrollments) Create(w http.ResponseWriter, r *http.Request) {
	req, err := enroll.DecodeRequest(r.Body)
	if err != nil {
		httpapi.EnrollDecodeError(h.Log, w, r, err)
		return
	}
	out, err := h.New(r, req)
	var ae *androidEnrollError
	switch {
	case errors.Is(err, ErrAndroidNotConfigured):
		problem.Error(w, r, http.StatusConflict, "android-not-configured", "Android management is not configured on this server")
	case errors.As(err, &ae):
		problemOr(h.Log, w, r, ae.err)
	case err != nil:
		httpapi.EnrollDecodeError(h.Log, w, r, err)
	default:
		httpjson.Write(w, http.StatusCreated, out)
	}
}

// ErrAndroidNotConfigured refuses an android enrollment on a server without Android management.
var ErrAndroidNotConfigured = errors.New("adminapi: Android management is not configured on this server")

// androidEnrollError is the Android Management API's refusal to make an enrollment token.
type androidEnrollError struct{ err error }

func (e *androidEnrollError) Error() string { return e.err.Error() }
func (e *androidEnrollError) Unwrap() error { return e.err }

// New creates a one-time enrollment for the caller of r, on the record, with the token shown
// only in the answer, and the profile or sign-in URL (Apple) or AMAPI token (Android) that goes
// with it: POST /api/v1/enrollments, and the console's enrollment page. Its errors are
// ErrAndroidNotConfigured, enroll's validation errors, and the Android Management API's.
func (h *Enrollments) New(r *http.Request, req enroll.Request) (api.NewEnrollment, error) {
	req.CreatedBy = httpapi.Actor(r)
	if req.Platform == enroll.PlatformAndroid && h.Android == nil {
		return api.NewEnrollment{}, ErrAndroidNotConfigured
	}
	e, token, err := h.Enrollments.Create(r.Context(), req)
	if err != nil {
		return api.NewEnrollment{}, err
	}
	out := api.NewEnrollment{Enrollment: enrollment(e), Token: token}
	if e.Platform == enroll.PlatformAndroid {
		// The Hale token rides in the AMAPI token; without one the enrollment is useless, and
		// it is revoked so that nothing can redeem it.
		if out.Android, err = h.Android.Enroll(r.Context(), e, token, req.BYOD); err != nil {
			if _, rerr := h.Enrollments.Revoke(r.Context(), e.ID); rerr != nil {
				h.Log.ErrorContext(r.Context(), "revoking an android enrollment without a token failed", "enrollment", e.ID, "err", rerr)
			}
			return api.NewEnrollment{}, &androidEnrollError{err}
		}
	}
	details := map[string]string{"owner": e.Owner, "group": e.Group, "platform": string(e.Platform), "byod": fmt.Sprint(e.BYOD)}
	if e.ManagedAppleID != "" {
		details["managed_apple_id"] = e.ManagedAppleID
	}
	if e.Reusable {
		details["reusable"], details["os"], details["max_devices"] = "true", e.OS, fmt.Sprint(e.MaxDevices)
		details["expires_at"] = e.ExpiresAt.Format(time.RFC3339)
	}
	if out.Android != nil {
		details["android_token"] = out.Android.TokenName
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "enrollment.create", Target: e.ID, Details: details})
	switch {
	case e.Platform == enroll.PlatformApple && e.BYOD:
		out.SignInURL = enroll.SignInURL(h.PublicURL)
	case e.Platform == enroll.PlatformApple:
		out.ProfileURL = enroll.ProfileURL(h.PublicURL, token)
	}
	return out, nil
}

// List is GET /api/v1/enrollments.
func (h *Enrollments) List(w http.ResponseWriter, r *http.Request) {
	list, err := h.Enrollments.List(r.Context())
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.Enrollments{Enrollments: make([]api.Enrollment, len(list))}
	for i, e := range list {
		out.Enrollments[i] = enrollment(e)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Revoke is DELETE /api/v1/enrollments/{id}: the token can no longer be used.
func (h *Enrollments) Revoke(w http.ResponseWriter, r *http.Request) {
	e, err := h.RevokeID(r, r.PathValue("id"))
	if errors.Is(err, enroll.ErrNotFound) {
		problem.NotFound(w, r, "no enrollment "+r.PathValue("id"))
		return
	} else if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, e)
}

// RevokeID revokes enrollment id for the caller of r, on the record: DELETE
// /api/v1/enrollments/{id}, and the console's enrollment page.
func (h *Enrollments) RevokeID(r *http.Request, id string) (api.Enrollment, error) {
	e, err := h.Enrollments.Revoke(r.Context(), id)
	if err != nil {
		return api.Enrollment{}, err
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "enrollment.revoke", Target: e.ID})
	return enrollment(e), nil
}

// enrollment is the wire form of an enrollment.
func enrollment(e *enroll.Enrollment) api.Enrollment {
	return api.Enrollment{
		ID: e.ID, Owner: e.Owner, Group: e.Group, Platform: string(e.Platform), CreatedAt: e.CreatedAt, CreatedBy: e.CreatedBy,
		ExpiresAt: e.ExpiresAt, UsedAt: e.UsedAt, DeviceID: e.DeviceID, RevokedAt: e.RevokedAt, State: string(e.State),
		BYOD: e.BYOD, ManagedAppleID: e.ManagedAppleID,
		Reusable: e.Reusable, OS: e.OS, MaxDevices: e.MaxDevices, Uses: e.Uses,
	}
}
