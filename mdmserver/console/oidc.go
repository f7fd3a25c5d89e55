package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// OIDCConfig signs people in to the console through the organisation's OpenID Connect provider
// (authorization code flow with PKCE, state and nonce). The provider's group claim decides the
// role: Roles maps a group to a Hale role, and a person in no mapped group cannot sign in.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL: https, or http on a loopback address only.
	Issuer string `mapstructure:"issuer"`
	// ClientID and ClientSecretFile are the console's client registration at the provider; the
	// redirect URI to register is PUBLIC_URL/console/oidc/callback.
	ClientID         string `mapstructure:"client_id"`
	ClientSecretFile string `mapstructure:"client_secret_file"`
	// Scopes requested besides openid (default email, profile, groups).
	Scopes []string `mapstructure:"scopes"`
	// GroupsClaim names the ID token claim listing the person's groups (default "groups").
	GroupsClaim string `mapstructure:"groups_claim"`
	// Roles maps a group to a role: admin, it, security or auditor. A person in groups of
	// several roles gets the first of admin, security, it, auditor.
	Roles map[string]string `mapstructure:"roles"`
}

// Enabled reports whether OIDC sign-in is configured.
func (c OIDCConfig) Enabled() bool { return c.Issuer != "" }

// rolePrecedence orders the roles a person in several mapped groups may get.
var rolePrecedence = []tokens.Role{tokens.RoleAdmin, tokens.RoleSecurity, tokens.RoleIT, tokens.RoleAuditor}

// Validate checks the configuration (not the provider, which is asked at the first sign-in).
func (c OIDCConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return fmt.Errorf("console_oidc.issuer %q: want an https URL (http only on a loopback address)", c.Issuer)
	}
	if c.ClientID == "" || c.ClientSecretFile == "" {
		return errors.New("console_oidc: client_id and client_secret_file are required")
	}
	if len(c.Roles) == 0 {
		return errors.New("console_oidc.roles: map at least one group to a role, or nobody can sign in")
	}
	for g, r := range c.Roles {
		if g == "" || !slices.Contains(rolePrecedence, tokens.Role(r)) {
			return fmt.Errorf("console_oidc.roles: group %q maps to %q; want admin, it, security or auditor", g, r)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// oidcCookie binds a sign-in in flight to the browser that started it. SameSite=Lax: the
// provider's redirect back is a cross-site navigation, which a Strict cookie would not follow.
const oidcCookie = "__Host-hale_oidc"

// pendingTTL bounds how long a person may take at the provider; maxPending bounds the table.
const (
	pendingTTL = 10 * time.Minute
	maxPending = 10000
)

// pendingLogin is a sign-in sent to the provider and not back yet.
type pendingLogin struct {
	binding  string // hash of the oidcCookie value
	nonce    string
	verifier string // PKCE
	at       time.Time
}

// oidcLogin is the console's OpenID Connect client.
type oidcLogin struct {
	cfg      OIDCConfig
	secret   string
	redirect string
	client   *http.Client

	mu       sync.Mutex
	provider *oidc.Provider // discovered at the first sign-in, then kept
	pending  map[string]*pendingLogin
}

// WithOIDC enables sign-in through cfg's provider; redirectURL is PUBLIC_URL/console/oidc/callback
// and secret the client secret. client (nil: http.DefaultClient) reaches the provider.
func WithOIDC(cfg OIDCConfig, secret, redirectURL string, client *http.Client) Option {
	return func(c *Console) {
		if client == nil {
			client = http.DefaultClient
		}
		c.oidc = &oidcLogin{cfg: cfg, secret: secret, redirect: redirectURL, client: client, pending: map[string]*pendingLogin{}}
		if c.oidc.cfg.GroupsClaim == "" {
			c.oidc.cfg.GroupsClaim = "groups"
		}
		if len(c.oidc.cfg.Scopes) == 0 {
			c.oidc.cfg.Scopes = []string{"email", "profile", "groups"}
		}
	}
}

// config returns the OAuth 2 client, discovering the provider on first use.
func (o *oidcLogin) config(ctx context.Context) (*oauth2.Config, *oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider == nil {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.cfg.Issuer)
		if err != nil {
			return nil, nil, err
		}
		o.provider = p
	}
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.secret, Endpoint: o.provider.Endpoint(),
		RedirectURL: o.redirect, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}, o.provider, nil
}

// oidcStart is GET /console/oidc/login: to the provider, with state, nonce and a PKCE
// challenge, the flow bound to this browser by a cookie.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if !c.allowSignin(w, r) {
		return
	}
	o := c.oidc
	conf, _, err := o.config(r.Context())
	if err != nil {
		c.log.ErrorContext(r.Context(), "console: OIDC discovery failed", "issuer", o.cfg.Issuer, "err", err)
		c.render(w, r, http.StatusBadGateway, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "The sign-in provider cannot be reached; try again, or sign in with an API token."})
		return
	}
	state, binding := randomToken(), randomToken()
	p := &pendingLogin{binding: hashKey(binding), nonce: randomToken(), verifier: oauth2.GenerateVerifier(), at: c.now()}
	cookie := binding
	if c.sealKey != nil {
		// The sign-in travels sealed in the browser's cookie: the callback may reach any server.
		cookie = c.sealPending(state, p)
	} else if !c.keepPending(state, p) {
		c.render(w, r, http.StatusServiceUnavailable, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w),
			Message: "Too many sign-ins in progress; try again in a few minutes."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: cookie, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: int(pendingTTL / time.Second)})
	http.Redirect(w, r, conf.AuthCodeURL(state, oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier)), http.StatusSeeOther)
}

// oidcCallback is GET /console/oidc/callback: the provider's answer. The state must be one this
// browser started, the code is exchanged with its PKCE verifier, the ID token must verify
// (issuer, audience, signature, expiry) and carry the nonce, and a mapped group gives the role.
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fail := func(status int, msg string) {
		c.render(w, r, status, "signin", nil, signinData{CSRF: c.refreshSigninCSRF(w), Message: msg})
	}
	o := c.oidc
	state := q.Get("state")
	ck, _ := r.Cookie(oidcCookie)
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	var p *pendingLogin
	if c.sealKey != nil {
		p = c.openPending(state, ck)
	} else {
		p = c.takePending(state, ck)
	}
	if p == nil || c.now().Sub(p.at) > pendingTTL || c.now().Before(p.at.Add(-time.Minute)) {
		fail(http.StatusBadRequest, "This sign-in was not started here, or took too long. Start again.")
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "The sign-in provider refused: "+truncate(e+" "+q.Get("error_description"), 200))
		return
	}
	conf, provider, err := o.config(r.Context())
	if err != nil {
		fail(http.StatusBadGateway, "The sign-in provider cannot be reached; try again.")
		return
	}
	ctx := oidc.ClientContext(r.Context(), o.client)
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		c.log.InfoContext(r.Context(), "console: OIDC code exchange failed", "err", err)
		fail(http.StatusUnauthorized, "The sign-in provider did not accept the sign-in; start again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: o.cfg.ClientID, Now: c.now}).Verify(ctx, raw)
	if err != nil || !sameToken(idt.Nonce, p.nonce) {
		c.log.InfoContext(r.Context(), "console: OIDC ID token refused", "err", err)
		fail(http.StatusUnauthorized, "The sign-in provider's answer did not verify; start again.")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		fail(http.StatusUnauthorized, "The sign-in provider's answer did not verify; start again.")
		return
	}
	ident, groups := o.identity(idt, claims, c.now())
	if ident == nil {
		rr := r.WithContext(tokens.WithToken(r.Context(), &tokens.Token{ID: subjectID(idt), Name: "oidc:" + idt.Subject, Person: personOf(idt, claims)}))
		_ = c.deps.Auditor.Record(rr, httpapi.Event{Action: "console.signin", Target: "console", Outcome: audit.OutcomeDenied,
			Details: map[string]string{"via": "oidc", "reason": "no group maps to a role", "groups": truncate(strings.Join(groups, ","), 300)}})
		fail(http.StatusForbidden, "You are signed in at the provider, but none of your groups is given a role in Hale.")
		return
	}
	c.openSession(w, r, ident, "oidc", map[string]string{"issuer": idt.Issuer, "subject": idt.Subject})
}

// identity is the signed-in person as a token the services understand: the role of their
// groups, their e-mail (or subject) as the person, created at sign-in, so that the two-person
// rule's "held before the request" counts from the sign-in. Nil when no group maps to a role.
func (o *oidcLogin) identity(idt *oidc.IDToken, claims map[string]any, now time.Time) (*tokens.Token, []string) {
	var groups []string
	switch g := claims[o.cfg.GroupsClaim].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				groups = append(groups, s)
			}
		}
	case string:
		groups = []string{g}
	}
	best := -1
	for _, g := range groups {
		if r, ok := o.cfg.Roles[g]; ok {
			if i := slices.Index(rolePrecedence, tokens.Role(r)); i >= 0 && (best < 0 || i < best) {
				best = i
			}
		}
	}
	if best < 0 {
		return nil, groups
	}
	person := personOf(idt, claims)
	return &tokens.Token{ID: subjectID(idt), Name: "oidc:" + truncate(person, 100), Role: rolePrecedence[best], Person: person,
		CreatedAt: now, CreatedBy: "oidc " + idt.Issuer}, groups
}

// subjectID is a stable token-like ID for an issuer's subject: 16 hex characters.
func subjectID(idt *oidc.IDToken) string {
	sum := sha256.Sum256([]byte(idt.Issuer + "\x00" + idt.Subject))
	return "oidc" + hex.EncodeToString(sum[:6])
}

// personOf is the person an ID token names: its verified e-mail, or the subject.
func personOf(idt *oidc.IDToken, claims map[string]any) string {
	if email, _ := claims["email"].(string); email != "" {
		if v, ok := claims["email_verified"].(bool); !ok || v {
			if tokens.ValidPerson(email) == nil {
				return email
			}
		}
	}
	p := "oidc:" + idt.Subject
	if tokens.ValidPerson(p) != nil {
		return "oidc:" + subjectID(idt)
	}
	return truncate(p, tokens.MaxPersonLen)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}
