// Package mydevice serves the "my device" page: a device's user sees, in their language, whether
// the device may open clinical messaging, what to fix with the steps for its platform, the
// deadline, a "check again" button and, where the policy allows, emergency access.
//
// The page is reached by the device itself: the agent, over mutual TLS with the device's
// certificate, asks for a link (POST /agent/v1/my-device-link) and opens it in the user's
// browser. The link carries a token sealed under the server's master key that names the device
// and expires in LinkTTL; it is the page's only credential (no cookies, so no cross-site
// request forgery), it shows that one device only, and nothing of the admin API. The page has
// no script at all, and its answers forbid framing and referrers.
package mydevice

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/policies"
	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/remediation"
)

// LinkTTL is how long a page link works.
const LinkTTL = 15 * time.Minute

// maxTokenLen bounds the token in a page URL; maxForm bounds a form post.
const (
	maxTokenLen = 512
	maxForm     = 8 << 10
)

const sealPurpose = "hale/my-device-link"

//go:embed page.html
var pageHTML string

//go:embed style.css
var styleCSS []byte

var page = template.Must(template.New("page").Parse(pageHTML))

// Handler serves the page and its link.
type Handler struct {
	// Key seals the links' tokens.
	Key *seal.Key
	// PublicURL is the base of the links.
	PublicURL string
	Decisions interface {
		Lookup(deviceID string, now time.Time) access.Answer
	}
	Devices interface {
		Get(ctx context.Context, id string) (*inventory.Device, error)
	}
	// PolicyFor is the device's policy, to offer emergency access only where it is allowed.
	PolicyFor func(d *inventory.Device) (*policies.Policy, error)
	// Refresh asks the device for a fresh posture where the server can (Apple), or re-evaluates
	// what it has; it answers what it did, for the page.
	Refresh func(ctx context.Context, d *inventory.Device) (asked bool, err error)
	// BreakGlass starts emergency access (nil: the page offers none).
	BreakGlass *breakglass.Service
	HelpDesk   remediation.HelpDesk
	Now        func() time.Time
	Log        *slog.Logger
}

type link struct {
	DeviceID string `json:"d"`
	Expires  int64  `json:"e"`
}

// Link is POST /agent/v1/my-device-link: the device (its certificate checked by the route)
// gets a link to its page, valid for LinkTTL.
func (h *Handler) Link(w http.ResponseWriter, r *http.Request) {
	d := httpapi.DeviceFrom(r.Context())
	if d == nil {
		problem.Error(w, r, http.StatusUnauthorized, "unauthorized", "a device certificate is required")
		return
	}
	httpjson.Write(w, http.StatusOK, h.LinkFor(d.ID))
}

// LinkFor makes a link to deviceID's page, valid for LinkTTL: for a caller that proved it
// speaks for the device (its certificate, or the messaging app's attested key).
func (h *Handler) LinkFor(deviceID string) api.MyDeviceLink {
	exp := h.Now().Add(LinkTTL)
	b, _ := json.Marshal(link{DeviceID: deviceID, Expires: exp.Unix()})
	tok := base64.RawURLEncoding.EncodeToString(h.Key.Seal(sealPurpose, b))
	return api.MyDeviceLink{URL: strings.TrimRight(h.PublicURL, "/") + "/my-device/" + tok, ExpiresAt: exp.UTC()}
}

// device opens the page's token and reads its device; it answers 404 itself when it cannot,
// alike for a forged, expired or unknown token, so a guess learns nothing.
func (h *Handler) device(w http.ResponseWriter, r *http.Request) (*inventory.Device, bool) {
	tok := r.PathValue("token")
	var l link
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil && len(tok) <= maxTokenLen {
		var pt []byte
		if pt, err = h.Key.Open(sealPurpose, raw); err == nil {
			err = json.Unmarshal(pt, &l)
		}
	}
	if err != nil || len(tok) > maxTokenLen || !h.Now().Before(time.Unix(l.Expires, 0)) {
		h.notFound(w)
		return nil, false
	}
	d, err := h.Devices.Get(r.Context(), l.DeviceID)
	if err != nil {
		if !errors.Is(err, inventory.ErrNotFound) {
			h.Log.ErrorContext(r.Context(), "my device page: read device", "device_id", l.DeviceID, "err", err)
		}
		h.notFound(w)
		return nil, false
	}
	return d, true
}

func (h *Handler) notFound(w http.ResponseWriter) {
	secure(w.Header())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte("This link is not valid or has expired. Open your device page again from the Hale agent.\n"))
}

// secure sets the page's protective headers: no script, no framing, no referrer (the URL is
// the credential), nothing cached.
func secure(hd http.Header) {
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
}

// Style is GET /my-device/style.css.
func (h *Handler) Style(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(styleCSS)
}

// Page is GET /my-device/{token}.
func (h *Handler) Page(w http.ResponseWriter, r *http.Request) {
	d, ok := h.device(w, r)
	if !ok {
		return
	}
	h.render(w, r, d, noticeOf(r.URL.Query().Get("done")))
}

// view is the template's data.
type view struct {
	Lang, Base, DeviceName, Platform, Contact string
	Notice                                    string
	T                                         texts
	Allow, InGrace, CanBreakGlass             bool
	GraceUntil                                time.Time
	BreakGlass                                *posture.BreakGlass
	Remediation                               []remediation.Item
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, d *inventory.Device, notice string) {
	now := h.Now()
	a := h.Decisions.Lookup(d.ID, now)
	c := remediation.Default()
	lang := c.Match(r.Header.Get("Accept-Language"))
	platform := ""
	if a.Posture != nil {
		platform = string(a.Posture.Platform)
	}
	v := view{Lang: lang, Base: "/my-device/" + r.PathValue("token"), DeviceName: d.Hostname, Platform: platform,
		Contact: c.Contact(h.HelpDesk, lang), T: pageTexts[lang], Allow: a.Allow, InGrace: a.InGrace,
		GraceUntil: a.GraceUntil, BreakGlass: a.BreakGlass,
		Remediation: c.Items(a.ReasonCodes(), remediation.Request{Lang: lang, Platform: platform, HelpDesk: h.HelpDesk})}
	if v.DeviceName == "" {
		v.DeviceName = d.ID
	}
	if notice != "" {
		v.Notice = v.T.notice(notice)
	}
	if !a.Allow && h.BreakGlass != nil && h.PolicyFor != nil {
		if p, err := h.PolicyFor(d); err == nil && p != nil && p.BreakGlass != nil && p.BreakGlass.Allowed {
			v.CanBreakGlass = len(access.Overridable(a, p.BreakGlass.Overridable)) == 0
		}
	}
	secure(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", lang)
	w.Header().Set("Vary", "Accept-Language")
	if err := page.Execute(w, v); err != nil {
		h.Log.ErrorContext(r.Context(), "my device page", "err", err)
	}
}

// Check is POST /my-device/{token}/check: ask the device for a fresh posture where the server
// can, then show the page again (post, redirect, get).
func (h *Handler) Check(w http.ResponseWriter, r *http.Request) {
	d, ok := h.device(w, r)
	if !ok {
		return
	}
	done := "checked"
	if h.Refresh != nil {
		asked, err := h.Refresh(r.Context(), d)
		switch {
		case err != nil:
			h.Log.WarnContext(r.Context(), "my device page: check again", "device_id", d.ID, "err", err)
			done = "check-failed"
		case asked:
			done = "asked"
		}
	}
	http.Redirect(w, r, "/my-device/"+r.PathValue("token")+"?done="+done, http.StatusSeeOther)
}

// StartBreakGlass is POST /my-device/{token}/break-glass (a form with reason): the device's
// user opens emergency access, under the same rules as the agent's API.
func (h *Handler) StartBreakGlass(w http.ResponseWriter, r *http.Request) {
	d, ok := h.device(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		problem.BadRequest(w, r, "the form could not be read")
		return
	}
	if h.BreakGlass == nil {
		h.notFound(w)
		return
	}
	e := httpapi.Entry(r, httpapi.Event{})
	e.Actor, e.Role = "device:"+d.ID, "device"
	e.Details = map[string]string{"via": "my-device page"}
	_, err := h.BreakGlass.Start(r.Context(), breakglass.Request{DeviceID: d.ID, Reason: r.PostForm.Get("reason"),
		Channel: breakglass.ChannelDevice, Entry: e})
	done := "break-glass"
	var ref *breakglass.Refusal
	switch {
	case errors.As(err, &ref):
		done = "refused:" + ref.Code
	case err != nil:
		h.Log.ErrorContext(r.Context(), "my device page: break-glass", "device_id", d.ID, "err", err)
		done = "check-failed"
	}
	http.Redirect(w, r, "/my-device/"+r.PathValue("token")+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}

// noticeOf keeps only the notices the page knows: the query is the user's to edit.
func noticeOf(done string) string {
	switch {
	case done == "checked", done == "asked", done == "check-failed", done == "break-glass":
		return done
	case strings.HasPrefix(done, "refused:break-glass-") && len(done) < 64:
		return done
	}
	return ""
}
