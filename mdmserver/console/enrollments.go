package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/skip2/go-qrcode"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/mdmserver/adminapi"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// EnrollmentList lists the one-time enrollments (an *enroll.Service).
type EnrollmentList interface {
	List(ctx context.Context) ([]*enroll.Enrollment, error)
}

// EnrollmentActions creates and revokes enrollments as the admin API does, on the record (an
// *adminapi.Enrollments).
type EnrollmentActions interface {
	New(r *http.Request, req enroll.Request) (api.NewEnrollment, error)
	RevokeID(r *http.Request, id string) (api.Enrollment, error)
}

type enrollmentsPage struct {
	Enrollments []api.Enrollment
	CanCreate   bool
	CanRevoke   bool
	// Created is the enrollment just made: its token is shown on this one answer only (never
	// in a URL, never kept), with a QR code of the link a device opens.
	Created *api.NewEnrollment
	QR      template.URL // data: URL of a PNG the server made

	QRText string
	Error  string
}

// enrollmentList is GET /console/enrollments.
func (c *Console) enrollmentList(w http.ResponseWriter, r *http.Request, ss *session) {
	c.renderEnrollments(w, r, ss, http.StatusOK, enrollmentsPage{})
}

func (c *Console) renderEnrollments(w http.ResponseWriter, r *http.Request, ss *session, status int, p enrollmentsPage) {
	list, err := c.deps.Enrollments.List(r.Context())
	if err != nil {
		c.internal(w, r, ss, err)
		return
	}
	t := tokens.FromContext(r.Context())
	p.CanCreate, p.CanRevoke = c.may(t, "POST /api/v1/enrollments"), c.may(t, "DELETE /api/v1/enrollments/{id}")
	for i := len(list) - 1; i >= 0 && len(p.Enrollments) < 200; i-- {
		p.Enrollments = append(p.Enrollments, adminapi.EnrollmentView(list[i]))
	}
	c.renderTitled(w, r, status, "enrollments", "Enrollments", ss, p)
}

// enrollmentCreate is POST /console/enrollments: the form, decoded as the admin API decodes
// its body, becomes a one-time enrollment.
func (c *Console) enrollmentCreate(w http.ResponseWriter, r *http.Request, ss *session) {
	f := r.PostForm
	body, _ := json.Marshal(api.EnrollmentRequest{Owner: strings.TrimSpace(f.Get("owner")), Group: strings.TrimSpace(f.Get("group")),
		Platform: f.Get("platform"), TTL: strings.TrimSpace(f.Get("ttl")), BYOD: f.Get("byod") == "on",
		ManagedAppleID: strings.TrimSpace(f.Get("managed_apple_id"))})
	req, err := enroll.DecodeRequest(bytes.NewReader(body))
	var out api.NewEnrollment
	if err == nil {
		out, err = c.deps.EnrollmentActions.New(r, req)
	}
	if err != nil {
		if !errors.Is(err, enroll.ErrInvalid) && !errors.Is(err, adminapi.ErrAndroidNotConfigured) {
			c.internal(w, r, ss, err)
			return
		}
		c.renderEnrollments(w, r, ss, http.StatusBadRequest, enrollmentsPage{Error: strings.TrimPrefix(err.Error(), "enroll: ")})
		return
	}
	p := enrollmentsPage{Created: &out}
	switch {
	case out.Android != nil && len(out.Android.QRPNG) > 0:
		p.QR, p.QRText = pngURL(out.Android.QRPNG), "the phone's setup wizard"
	case out.ProfileURL != "" || out.SignInURL != "":
		link := out.ProfileURL
		if link == "" {
			link = out.SignInURL
		}
		png, err := qrcode.Encode(link, qrcode.Medium, 256)
		if err != nil {
			c.internal(w, r, ss, err)
			return
		}
		p.QR, p.QRText = pngURL(png), link
	}
	c.renderEnrollments(w, r, ss, http.StatusCreated, p)
}

// pngURL is a data: URL of png. html/template refuses data: URLs it cannot vouch for; this one
// is base64 of an image the server made, so nothing in it can break out of the attribute.
func pngURL(png []byte) template.URL {
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
}

// enrollmentRevoke is POST /console/enrollments/{id}/revoke.
func (c *Console) enrollmentRevoke(w http.ResponseWriter, r *http.Request, ss *session) {
	back := Prefix + "enrollments"
	e, err := c.deps.EnrollmentActions.RevokeID(r, r.PathValue("id"))
	switch {
	case errors.Is(err, enroll.ErrNotFound):
		c.flashAndRedirect(w, r, ss, "error", "No enrollment "+r.PathValue("id")+".", back)
	case err != nil:
		c.internal(w, r, ss, err)
	default:
		c.flashAndRedirect(w, r, ss, "ok", "Enrollment "+e.ID+" revoked.", back)
	}
}
