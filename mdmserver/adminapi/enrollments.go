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
	req.CreatedBy = httpapi.Actor(r)
	if req.Platform == enroll.PlatformAndroid && h.Android == nil {
		problem.Error(w, r, http.StatusConflict, "android-not-configured", "Android management is not configured on this server")
		return
	}
	e, token, err := h.Enrollments.Create(r.Context(), req)
	if err != nil {
		httpapi.EnrollDecodeError(h.Log, w, r, err)
		return
	}
	out := api.NewEnrollment{Enrollment: enrollment(e), Token: token}
	if e.Platform == enroll.PlatformAndroid {
		// The Hale token rides in the AMAPI token; without one the enrollment is useless, and
		// it is revoked so that nothing can redeem it.
		if out.Android, err = h.Android.Enroll(r.Context(), e, token, req.BYOD); err != nil {
			if _, rerr := h.Enrollments.Revoke(r.Context(), e.ID); rerr != nil {
				h.Log.ErrorContext(r.Context(), "revoking an android enrollment without a token failed", "enrollment", e.ID, "err", rerr)
			}
			problemOr(h.Log, w, r, err)
			return
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
	httpjson.Write(w, http.StatusCreated, out)
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
	e, err := h.Enrollments.Revoke(r.Context(), r.PathValue("id"))
	if errors.Is(err, enroll.ErrNotFound) {
		problem.NotFound(w, r, "no enrollment "+r.PathValue("id"))
		return
	} else if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "enrollment.revoke", Target: e.ID})
	httpjson.Write(w, http.StatusOK, enrollment(e))
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
