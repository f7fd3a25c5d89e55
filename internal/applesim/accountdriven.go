package applesim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/halemdm/hale/internal/randid"
)

// SignInFunc is the person at the sign-in web view of account-driven enrollment: given the
// URL the server's challenge named, it signs in and returns the access token the page handed
// back through apple-remotemanagement-user-login://authentication-results?access-token=...
type SignInFunc func(ctx context.Context, signInURL string) (accessToken string, err error)

// LoginCallback is the scheme and path a sign-in page sends the device back to.
const LoginCallback = "apple-remotemanagement-user-login://authentication-results"

// challengeParam reads one parameter of a WWW-Authenticate Bearer challenge.
var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// AccountDrivenEnroll enrolls a personal device the way account-driven User Enrollment does,
// after the person typed account (user@domain) in Settings: it fetches the service discovery
// document from discoveryBase (https://<domain>, the account's domain in real life), sends the
// enrollment request to the mdm-byod BaseURL, takes the 401's Bearer method="apple-as-web"
// challenge to signIn, sends the request again with the access token, and installs the
// user-enrollment profile it gets (SCEP identity, then [Device] with the profile's options).
// The device is returned not yet checked in: call Enroll.
func AccountDrivenEnroll(ctx context.Context, client *http.Client, discoveryBase, account string, signIn SignInFunc, opts ...Option) (*Device, error) {
	if !strings.Contains(account, "@") {
		return nil, fmt.Errorf("applesim: account %q is not user@domain", account)
	}
	q := url.Values{"user-identifier": {account}, "model-family": {"iPhone"}}
	body, resp, err := get(ctx, client, strings.TrimRight(discoveryBase, "/")+"/.well-known/com.apple.remotemanagement?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("applesim: service discovery: %s", resp.Status)
	}
	var doc struct {
		Servers []struct{ Version, BaseURL string }
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("applesim: service discovery: %w", err)
	}
	base := ""
	for _, s := range doc.Servers {
		if s.Version == "mdm-byod" && isHTTPS(s.BaseURL) {
			base = s.BaseURL
		}
	}
	if base == "" {
		return nil, errors.New("applesim: service discovery names no https mdm-byod server")
	}
	machineInfo, err := encodePlist(map[string]any{"PRODUCT": "iPhone15,2", "VERSION": "21F90", "LANGUAGE": "en"})
	if err != nil {
		return nil, err
	}
	_, resp, err = get(ctx, client, base, machineInfo)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return nil, fmt.Errorf("applesim: enrollment request without a token: %s, want 401", resp.Status)
	}
	challenge, ok := strings.CutPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ")
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(challenge, -1) {
		params[m[1]] = m[2]
	}
	if !ok || params["method"] != "apple-as-web" || !isHTTPS(params["url"]) {
		return nil, fmt.Errorf("applesim: the 401 has no apple-as-web challenge: %q", resp.Header.Get("WWW-Authenticate"))
	}
	signInURL := params["url"]
	if u, err := url.Parse(signInURL); err == nil {
		v := u.Query()
		v.Set("user-identifier", account)
		u.RawQuery = v.Encode()
		signInURL = u.String()
	}
	token, err := signIn(ctx, signInURL)
	if err != nil {
		return nil, fmt.Errorf("applesim: sign-in: %w", err)
	}
	profile, resp, err := get(ctx, client, base, machineInfo, "Authorization", "Bearer "+token)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-apple-aspen-config" {
		return nil, fmt.Errorf("applesim: enrollment request with the access token: %s %s", resp.Status, bytes.TrimSpace(profile))
	}
	ep, err := ParseEnrollmentProfile(profile)
	if err != nil {
		return nil, err
	}
	if ep.EnrollmentMode != "BYOD" || !strings.EqualFold(ep.AssignedManagedAppleID, account) {
		return nil, fmt.Errorf("applesim: the profile is not a user enrollment of %s (mode %q, account %q)", account, ep.EnrollmentMode, ep.AssignedManagedAppleID)
	}
	return EnrollFromProfile(ctx, client, profile, opts...)
}

// get sends a GET, or a POST of body when it is not nil, with header pairs, and returns the
// answer's body (at most MaxProfileSize).
func get(ctx context.Context, client *http.Client, u string, body []byte, header ...string) ([]byte, *http.Response, error) {
	method, rd := http.MethodGet, io.Reader(nil)
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxProfileSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > MaxProfileSize {
		return nil, nil, errors.New("applesim: answer too large")
	}
	return b, resp, nil
}

// withUserEnrollment makes the device a user enrollment of a personal
// device as account, enrolled by the profile profileID.
func withUserEnrollment(profileID, account string) Option {
	return func(d *Device) {
		d.userEnrollment, d.mdmProfileID, d.managedAppleID = true, profileID, account
		d.enrollmentID = strings.ToUpper(randid.Hex(16))
	}
}

// UserEnrollment reports whether the device is a user enrollment
// (account-driven, personal), and the EnrollmentID it reports then.
func (d *Device) UserEnrollment() (bool, string) { return d.userEnrollment, d.enrollmentID }

// ident adds the device's identity to a message: its UDID, or for a
// user enrollment the EnrollmentID Apple sends in its place.
func (d *Device) ident(m map[string]any) map[string]any {
	if d.userEnrollment {
		m["EnrollmentID"] = d.enrollmentID
		return m
	}
	m["UDID"] = d.udid
	return m
}

// endUserEnrollment is what a personal device does once its enrollment
// profile is removed: the managed volume goes (managed apps and data,
// profiles, declarations), the person's own data stays, and the device
// checks out. d.connMu is held.
func (d *Device) endUserEnrollment(ctx context.Context) error {
	d.mu.Lock()
	d.state.Profiles, d.state.DDM = nil, DDMState{}
	d.state.ManagedVolumeRemoved = true
	d.enrolled, d.mdmProfileID, d.unenrollAfter = false, "", false
	d.notifyLocked()
	d.mu.Unlock()
	err := d.checkin(ctx, d.ident(map[string]any{"MessageType": "CheckOut", "Topic": d.topic}))
	d.logger.Info("user enrollment removed: managed volume deleted, checked out")
	if err != nil {
		return errors.Join(ErrUnenrolled, fmt.Errorf("applesim: CheckOut: %w", err))
	}
	return ErrUnenrolled
}
