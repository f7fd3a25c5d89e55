package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// handlerFunc serves a signed-in request; r's context carries the session's token.
type handlerFunc func(w http.ResponseWriter, r *http.Request, ss *session)

// maxFormBytes bounds a form's body (the audit verification's checkpoint is the largest).
const maxFormBytes = 64 << 10

// expired reports whether ss has ended at now: idle too long, or past its lifetime.
func (c *Console) expired(ss *session, now time.Time) bool {
	return c.expiredAt(ss.created, c.sessions.seen(ss), now)
}

// expiredAt reports whether a session created and last seen at these times has ended at now.
func (c *Console) expiredAt(created, lastSeen, now time.Time) bool {
	return now.Sub(lastSeen) >= c.idle || now.Sub(created) >= c.lifetime
}

// current returns the request's open session and its token, ending (and auditing the end of) a
// session that expired or whose token is no longer active. ended says why a session that was
// presented is gone.
func (c *Console) current(r *http.Request) (ss *session, t *tokens.Token, ended string) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, nil, ""
	}
	ss, err = c.sessions.get(r.Context(), ck.Value)
	if err != nil {
		// Fail closed: a session that cannot be read is not open.
		c.log.ErrorContext(r.Context(), "console: session lookup failed", "err", err)
		return nil, nil, "the server could not check your sign-in; try again"
	}
	if ss == nil {
		return nil, nil, "your session has ended; sign in again"
	}
	now := c.now()
	switch {
	case now.Sub(ss.created) >= c.lifetime:
		ended = "lifetime"
	case now.Sub(c.sessions.seen(ss)) >= c.idle:
		ended = "idle"
	}
	if ended == "" && ss.ident != nil {
		t = ss.ident
	} else if ended == "" {
		t, err = c.deps.Tokens.Get(r.Context(), ss.tokenID)
		if err != nil && !errors.Is(err, tokens.ErrNotFound) {
			c.log.ErrorContext(r.Context(), "console: token lookup failed", "err", err)
			return nil, nil, "the server could not check your sign-in; try again"
		}
		if t == nil || t.State(now) != "active" {
			ended = "token_" + stateOf(t, now)
		}
	}
	if ended != "" {
		if c.end(r, ss, t, "console.session_expired", ended) != nil {
			return nil, nil, "the server could not check your sign-in; try again"
		}
		return nil, nil, endedMessage(ended)
	}
	c.sessions.touch(r.Context(), ss, now)
	return ss, t, ""
}

func stateOf(t *tokens.Token, now time.Time) string {
	if t == nil {
		return "deleted"
	}
	return t.State(now)
}

func endedMessage(why string) string {
	switch why {
	case "idle":
		return "you were signed out after a period without activity; sign in again"
	case "lifetime":
		return "your session reached its maximum length; sign in again"
	}
	return "your API token is no longer active; sign in with an active one"
}

// end closes ss and puts it on the audit record, once (whichever server, or the sweep, ends it
// first records it). It fails when the store could not delete the session: then it is still
// open, on every server.
func (c *Console) end(r *http.Request, ss *session, t *tokens.Token, action, why string) error {
	ok, err := c.sessions.remove(r.Context(), ss)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: ending a session failed", "action", action, "err", err)
		return err
	}
	if !ok {
		return nil
	}
	if t == nil && ss.ident != nil {
		t = ss.ident
	} else if t == nil {
		t, _ = c.deps.Tokens.Get(r.Context(), ss.tokenID)
	}
	rr := r
	if t != nil {
		rr = r.WithContext(tokens.WithToken(r.Context(), t))
	}
	_ = c.deps.Auditor.Record(rr, httpapi.Event{Action: action, Target: "console", Details: map[string]string{"reason": why, "via": ss.via}})
	return nil
}

// Run ends expired sessions every interval until ctx is done, each on the audit record: an
// automatic logoff is recorded when it happens, not when (or if) the browser comes back.
func (c *Console) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Sweep(ctx)
		}
	}
}

// Sweep ends the sessions expired now, on the record. With several servers on one database the
// one that runs background work sweeps for all of them: the sessions and their last-seen
// times are in the store.
func (c *Console) Sweep(ctx context.Context) {
	now := c.now()
	ended, err := c.sessions.removeExpired(ctx, now, c.expiredAt)
	if err != nil {
		c.log.ErrorContext(ctx, "console: sweeping expired sessions failed; will retry", "err", err)
	}
	for _, ss := range ended {
		why := "idle"
		if now.Sub(ss.created) >= c.lifetime {
			why = "lifetime"
		}
		_, err := c.deps.Auditor.Log.Append(ctx, audit.Entry{Actor: "token:" + ss.who.ID, Role: string(ss.who.Role), Person: ss.who.Person,
			Action: "console.session_expired", Target: "console", Outcome: audit.OutcomeOK,
			Details: map[string]string{"reason": why, "via": ss.via, "token_name": ss.who.Name}})
		if err != nil {
			c.log.ErrorContext(ctx, "AUDIT APPEND FAILED", "action", "console.session_expired", "err", err)
		}
	}
}

// require serves h to signed-in people whose role the admin API route apiPattern allows. No
// session: to the sign-in page (or 401 for htmx). Another role: 403, audited as the JSON API
// audits it. A state-changing request without the session's CSRF token: 403.
func (c *Console) require(apiPattern string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss, t, ended := c.current(r)
		if ss == nil {
			c.toSignin(w, r, ended)
			return
		}
		r = r.WithContext(tokens.WithToken(r.Context(), t))
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil || !sameToken(r.PostForm.Get("csrf"), ss.csrf) {
				c.errorPage(w, r, ss, http.StatusForbidden, "This form has expired or did not come from this console (missing or wrong CSRF token). Reload the page and try again.")
				return
			}
		}
		if !c.may(t, apiPattern) {
			c.deps.Auditor.RecordForbidden(r, t)
			roles, _ := c.deps.Roles(apiPattern)
			c.errorPage(w, r, ss, http.StatusForbidden, "Your role ("+string(t.Role)+") may not do this; allowed: "+joinRoles(roles)+".")
			return
		}
		h(w, r, ss)
	})
}

func joinRoles(roles []tokens.Role) string {
	s := []string{string(tokens.RoleAdmin)}
	for _, r := range roles {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// toSignin sends a request without a session to the sign-in page, saying why.
func (c *Console) toSignin(w http.ResponseWriter, r *http.Request, why string) {
	target := Prefix + "signin"
	if why != "" {
		target += "?ended=1"
	}
	if r.Header.Get("HX-Request") == "true" {
		// htmx follows a redirect inside the swap; make it load the sign-in page whole.
		w.Header().Set("HX-Redirect", target)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodGet {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w), Message: "Sign in to continue. " + why})
}

type signinData struct {
	Message string
	CSRF    string
}

// signinForm is GET /console/signin: the form, with a fresh double-submit CSRF token.
func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	if ss, _, _ := c.current(r); ss != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	d := signinData{CSRF: randomToken()}
	if r.URL.Query().Get("ended") != "" {
		d.Message = "Your session ended (idle logoff, maximum length, or a revoked token). Sign in again."
	}
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: d.CSRF, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	c.render(w, r, http.StatusOK, "signin", nil, d)
}

// signin is POST /console/signin: an API token (the same store and roles as the admin API)
// opens a session. The token itself goes no further than this request: the session keeps its
// ID only.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if !c.allowSignin(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	ck, _ := r.Cookie(signinCookie)
	if err := r.ParseForm(); err != nil || ck == nil || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
		c.render(w, r, http.StatusForbidden, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "The sign-in form expired or did not come from this console. Try again."})
		return
	}
	presented := strings.TrimSpace(r.PostForm.Get("token"))
	t, err := c.deps.Tokens.Authenticate(r.Context(), presented)
	if err != nil {
		if !slices.ContainsFunc([]error{tokens.ErrMalformed, tokens.ErrUnknown, tokens.ErrExpired, tokens.ErrRevoked},
			func(e error) bool { return errors.Is(err, e) }) {
			c.log.ErrorContext(r.Context(), "console: token lookup failed", "err", err)
		}
		c.log.InfoContext(r.Context(), "console sign-in refused", "reason", err.Error(), "remote", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "That token is unknown, expired or revoked."})
		return
	}
	if t.Role == tokens.RoleAccess {
		// The messaging backend's role reads access decisions only; it has no console.
		c.render(w, r, http.StatusForbidden, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "Tokens of the access role cannot sign in to the console."})
		return
	}
	c.openSession(w, r, t, "token", nil)
}

// openSession opens a session for t, signed in via "token" or "oidc", on the record, and sends
// the browser to the fleet page. A sign-in that cannot be recorded does not happen.
func (c *Console) openSession(w http.ResponseWriter, r *http.Request, t *tokens.Token, via string, details map[string]string) {
	ss := &session{tokenID: t.ID, via: via, who: *t}
	if via == "oidc" {
		ss.ident = t
	}
	ss, cookie, err := c.sessions.createFor(ss, c.now(), c.expiredAt)
	if err != nil {
		c.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "Too many open console sessions; try again later."})
		return
	}
	d := map[string]string{"via": via}
	for k, v := range details {
		d[k] = v
	}
	rr := r.WithContext(tokens.WithToken(r.Context(), t))
	if err := c.deps.Auditor.Record(rr, httpapi.Event{Action: "console.signin", Target: "console", Details: d}); err != nil {
		_, _ = c.sessions.remove(r.Context(), ss)
		c.render(w, r, http.StatusInternalServerError, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "The server could not record the sign-in; try again."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.SetCookie(w, c.sessionCookie(cookie))
	if via == "oidc" {
		// The provider's redirect was a cross-site navigation: a redirect now would carry it on,
		// and the browser would not send the Strict session cookie. A page of this site moving
		// on by itself makes the next request same-site.
		c.renderTitled(w, r, http.StatusOK, "signedin", "Signed in", nil, Prefix)
		return
	}
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// allowSignin spends one of the source address's sign-in attempts, answering 429 when it has
// none left: API tokens cannot be guessed, but the attempts still cost a lookup each, and the
// OIDC table of sign-ins in flight is bounded.
func (c *Console) allowSignin(w http.ResponseWriter, r *http.Request) bool {
	if c.signins.Allow(r.RemoteAddr) {
		return true
	}
	c.log.InfoContext(r.Context(), "console sign-in rate-limited", "remote", r.RemoteAddr)
	w.Header().Set("Retry-After", "60")
	c.render(w, r, http.StatusTooManyRequests, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
		Message: "Too many sign-in attempts from your address; wait a minute and try again."})
	return false
}

// sessionCookie is the session cookie: a session cookie of the browser too (no Max-Age), as
// the server ends it anyway.
func (c *Console) sessionCookie(value string) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
}

func (c *Console) refreshSigninCSRF(w http.ResponseWriter) string {
	v := randomToken()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: v, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	return v
}

// signout is POST /console/signout (with the session's CSRF token): the session ends, on the
// record, and the cookie is cleared.
func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	ss, t, _ := c.current(r)
	if ss != nil {
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		if err := r.ParseForm(); err != nil || !sameToken(r.PostForm.Get("csrf"), ss.csrf) {
			c.errorPage(w, r.WithContext(tokens.WithToken(r.Context(), t)), ss, http.StatusForbidden,
				"This sign-out form did not come from this console (missing or wrong CSRF token).")
			return
		}
		if err := c.end(r, ss, t, "console.signout", "signed_out"); err != nil {
			c.errorPage(w, r.WithContext(tokens.WithToken(r.Context(), t)), ss, http.StatusServiceUnavailable,
				"The server could not sign you out (the session store is unavailable); try again.")
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}
