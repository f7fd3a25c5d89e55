package applemdm

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
)

// Account-driven User Enrollment of personal devices (Apple's "simple authentication" flow):
//
//  1. The person signs in to their work account (the Managed Apple Account IT named) in
//     Settings; the device fetches https://<domain>/.well-known/com.apple.remotemanagement,
//     which names the enrollment URL for mdm-byod (RemoteManagement).
//  2. The device's enrollment request there is answered 401 with WWW-Authenticate: Bearer
//     method="apple-as-web", url=<sign-in page> (BYODEnroll).
//  3. The device shows the sign-in page; the person gives the one-time enrollment code IT issued
//     (mdmctl enroll create --platform apple --byod); the page redirects to
//     apple-remotemanagement-user-login://authentication-results?access-token=... (SignIn).
//  4. The device repeats the enrollment request with Authorization: Bearer <access token> and
//     gets the user-enrollment profile (EnrollmentMode BYOD, the Managed Apple Account, no
//     erase right), whose SCEP payload spends the enrollment as a device profile does.
//
// The access token is the enrollment code sealed under the master key with its expiry: it names
// one enrollment, cannot be forged or read, and stays valid only briefly; the code is spent when
// the profile is handed out.

// EndpointBYOD counts the refusals of the account-driven enrollment endpoints.
const EndpointBYOD = "apple_byod"

// Sealer seals and opens secrets under the master key (*seal.Key).
type Sealer interface {
	Seal(purpose string, plaintext []byte) []byte
	Open(purpose string, sealed []byte) ([]byte, error)
}

const (
	accessTokenPurpose = "applemdm/byod-access-token"
	accessTokenTTL     = 15 * time.Minute
	// maxEnrollRequest bounds the device's enrollment request body (its machine information).
	maxEnrollRequest = 64 << 10
	// loginScheme is where the sign-in page sends the device back (Apple's callback scheme).
	loginScheme = "apple-remotemanagement-user-login://authentication-results"
)

// RemoteManagement is GET /.well-known/com.apple.remotemanagement: the service discovery
// document that names Hale's account-driven enrollment URL. Serve it at the organization's
// domain (the part of the Managed Apple Account after "@"): from Hale when Hale answers there,
// or by copying or redirecting to it from the domain's web server.
func (s *Service) RemoteManagement(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]any{
		"Servers": []map[string]string{{"Version": "mdm-byod", "BaseURL": enroll.BYODURL(s.d.PublicURL)}},
	})
}

// BYODEnroll is the account-driven enrollment request (GET or POST /enroll/apple/byod): 401
// with the sign-in challenge until it carries a valid access token, then the user-enrollment
// profile.
func (s *Service) BYODEnroll(w http.ResponseWriter, r *http.Request) {
	if !s.d.Refusals.Allow(w, r, EndpointBYOD) {
		return
	}
	// The body is the device's machine information; Hale needs none of it, but reads it bounded.
	if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxEnrollRequest+1)); err != nil {
		problem.BadRequest(w, r, "unreadable enrollment request")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" {
		s.challenge(w, r, "sign in to enroll this device")
		return
	}
	token, err := s.openAccessToken(bearer)
	if err != nil {
		s.d.Refusals.Tally(r.Context(), r.RemoteAddr, EndpointBYOD, "access_token")
		s.challenge(w, r, "the access token is not valid (expired or not Hale's): sign in again")
		return
	}
	p, err := s.enrollmentProfile(r.Context(), token, true)
	switch {
	case errors.Is(err, errNoPushCert):
		problem.Error(w, r, http.StatusConflict, "no-push-certificate",
			"Apple enrollment needs an APNs push certificate: upload one with PUT /api/v1/pushcert")
		return
	case errors.As(err, new(refusedToken)):
		s.d.Refusals.Refused(r.Context(), r.RemoteAddr, EndpointBYOD, errors.Unwrap(err))
		// A spent or revoked code: the device cannot go on with this token.
		problem.Error(w, r, http.StatusForbidden, "enrollment-token-invalid", "the enrollment code cannot be used: "+errors.Unwrap(err).Error())
		return
	case err != nil:
		httpapi.Internal(s.log, w, r, err)
		return
	}
	_ = s.auditor().Record(r, httpapi.Event{Action: "enrollment.apple_user_enrollment", Target: p.enrollment.ID,
		Details: map[string]string{"device_id": p.deviceID, "owner": p.enrollment.Owner, "group": p.enrollment.Group,
			"managed_apple_id": p.enrollment.ManagedAppleID}})
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(p.signed)
}

// challenge answers 401 with the account-driven sign-in challenge.
func (s *Service) challenge(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer method="apple-as-web", url="`+enroll.SignInURL(s.d.PublicURL)+`"`)
	problem.Error(w, r, http.StatusUnauthorized, "authentication-required", detail)
}

// accessToken is what an access token seals.
type accessToken struct {
	Token   string `json:"t"`
	Expires int64  `json:"exp"`
}

func (s *Service) newAccessToken(enrollmentToken string) string {
	b, _ := json.Marshal(accessToken{Token: enrollmentToken, Expires: time.Now().Add(accessTokenTTL).Unix()})
	return base64.RawURLEncoding.EncodeToString(s.d.Sealer.Seal(accessTokenPurpose, b))
}

func (s *Service) openAccessToken(v string) (string, error) {
	if len(v) > 1024 {
		return "", errors.New("access token too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return "", err
	}
	b, err := s.d.Sealer.Open(accessTokenPurpose, raw)
	if err != nil {
		return "", err
	}
	var at accessToken
	if err := json.Unmarshal(b, &at); err != nil || at.Token == "" {
		return "", errors.New("malformed access token")
	}
	if time.Now().Unix() > at.Expires {
		return "", errors.New("access token expired")
	}
	return at.Token, nil
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Enroll your device</title>
<style>body{font-family:-apple-system,system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}
input,button{font-size:1.1rem;width:100%;padding:.6rem;margin:.4rem 0;box-sizing:border-box}.err{color:#b00020}</style></head>
<body><h1>Enroll your device</h1>
<p>Your organization manages only its own apps and data on this device, on their own volume: it cannot see or erase your personal data.</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<form method="post">
<input type="hidden" name="user" value="{{.User}}">
<label for="code">Enrollment code from your IT team</label>
<input id="code" name="code" autocomplete="one-time-code" required autofocus>
<button type="submit">Continue</button>
</form></body></html>
`))

// SignIn is the sign-in page of account-driven enrollment (GET and POST
// /enroll/apple/byod/signin): the person gives the enrollment code IT issued; a BYOD code for
// the account the device signs in with sends the device back with an access token.
func (s *Service) SignIn(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	user := r.URL.Query().Get("user-identifier")
	if r.Method == http.MethodGet {
		s.page(w, http.StatusOK, user, "")
		return
	}
	if !s.d.Refusals.Allow(w, r, EndpointBYOD) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		s.page(w, http.StatusBadRequest, user, "The form could not be read.")
		return
	}
	code, user := strings.TrimSpace(r.PostForm.Get("code")), strings.TrimSpace(r.PostForm.Get("user"))
	e, err := s.d.Enrollments.CheckBYOD(r.Context(), code)
	if err == nil && user != "" && !strings.EqualFold(user, e.ManagedAppleID) {
		err = errors.New("the code is for another account")
	}
	if err != nil {
		if !s.d.Refusals.Refused(r.Context(), r.RemoteAddr, EndpointBYOD, err) {
			s.d.Refusals.Tally(r.Context(), r.RemoteAddr, EndpointBYOD, "sign_in")
		}
		s.page(w, http.StatusUnauthorized, user, "That code cannot enroll this device: it is unknown, used, expired, revoked, for another account or not for a personal device. Ask your IT team for a new one.")
		return
	}
	_ = s.auditor().Record(r, httpapi.Event{Action: "enrollment.apple_sign_in", Target: e.ID,
		Details: map[string]string{"managed_apple_id": e.ManagedAppleID}})
	http.Redirect(w, r, loginScheme+"?access-token="+url.QueryEscape(s.newAccessToken(code)), http.StatusFound)
}

func (s *Service) page(w http.ResponseWriter, status int, user, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = signInPage.Execute(w, struct{ User, Error string }{clipText(user, 256), msg})
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
