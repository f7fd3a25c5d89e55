package agent

import (
	"context"
	"errors"
	"net/url"

	"github.com/halemdm/hale/api"
)

// myDeviceLink is the server's answer, checked before it is shown or opened.
type myDeviceLink api.MyDeviceLink

func (l *myDeviceLink) validate() error {
	u, err := url.Parse(l.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || len(l.URL) > 2048 {
		return errors.New("the server sent an invalid my-device link")
	}
	return nil
}

// MyDeviceLink asks the server, with the device's certificate, for a link to this device's page
// (its status, what to fix, check again, emergency access) for the user's browser.
func (a *Agent) MyDeviceLink(ctx context.Context) (api.MyDeviceLink, error) {
	var l myDeviceLink
	err := a.client.do(ctx, a.requestTimeout, "POST", "/agent/v1/my-device-link", nil, &l)
	return api.MyDeviceLink(l), err
}

// breakGlassUse is the server's answer to an emergency access request.
type breakGlassUse api.BreakGlassUse

func (u *breakGlassUse) validate() error {
	if u.ID == "" || u.ExpiresAt.IsZero() {
		return errors.New("the server sent an invalid emergency access answer")
	}
	return nil
}

// BreakGlass asks the server, with the device's certificate, to open emergency access for this
// device: reason says why care cannot wait; duration ("2h", or "" for the policy's) how long.
func (a *Agent) BreakGlass(ctx context.Context, reason, duration string) (api.BreakGlassUse, error) {
	var u breakGlassUse
	err := a.client.do(ctx, a.requestTimeout, "POST", "/agent/v1/break-glass", api.BreakGlassRequest{Reason: reason, Duration: duration}, &u)
	return api.BreakGlassUse(u), err
}
