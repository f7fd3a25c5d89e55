// Package console is Hale's web console: server-rendered pages (html/template, htmx for partial
// updates, both embedded) over the same domain services the JSON admin API uses, rendering its
// api wire types.
//
// Every page and action mirrors an admin API route and allows exactly that route's roles: the
// server passes its route table in (Deps.Roles), so the console cannot drift from routes.go.
// People sign in with their API token or through OpenID Connect; the browser then holds only a
// random session cookie (HttpOnly, Secure, SameSite=Strict, __Host- prefixed), the session is
// kept server side (in the store, by the cookie's hash),
// ends after an idle period (HIPAA's automatic logoff) and an absolute lifetime, and every
// state-changing form carries the session's CSRF token. Pages are served with a strict
// Content-Security-Policy: no inline script or style anywhere.
package console

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/agentcmd"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/commands"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/idempotency"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/security"
	"github.com/halemdm/hale/mdmserver/tokens"
	"github.com/halemdm/hale/policies"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of the session limits.
const (
	// DefaultIdleTimeout is HIPAA's automatic logoff: a session unused this long ends.
	DefaultIdleTimeout = 15 * time.Minute
	// DefaultLifetime ends every session this long after sign-in, however active.
	DefaultLifetime = 12 * time.Hour
	// maxSessions bounds the session table.
	maxSessions = 10000
)

// Tokens authenticates API tokens and reads them again by ID (a *tokens.Service).
type Tokens interface {
	Authenticate(ctx context.Context, presented string) (*tokens.Token, error)
	Get(ctx context.Context, id string) (*tokens.Token, error)
}

// Devices reads the inventory (an *inventory.Service): the same paging the JSON API uses.
type Devices interface {
	httpapi.DeviceLookup
	List(ctx context.Context, f inventory.Filter, cursor string, limit int) ([]inventory.Device, string, error)
	ForEach(ctx context.Context, fn func(*inventory.Device) error) error
}

// Verdicts gives each device's verdict and posture (a *compliance.Engine).
type Verdicts interface {
	Verdict(deviceID string) (v policies.Verdict, p *policies.Posture, ok bool)
}

// Access answers as the access API does (an *access.Index).
type Access interface {
	Lookup(deviceID string, now time.Time) access.Answer
}

// AppleCommands lists an Apple device's MDM commands (a *commands.Service).
type AppleCommands interface {
	List(ctx context.Context, enrollmentID string) ([]*commands.Record, error)
}

// AgentCommands lists an agent's commands (an *agentcmd.Queue).
type AgentCommands interface {
	List(ctx context.Context, deviceID string) ([]agentcmd.Command, error)
}

// Security carries out lock, lost mode and wipe, and decides held wipes (a *security.Service).
type Security interface {
	Order(ctx context.Context, by security.Actor, deviceID string, action security.Action, req api.SecurityRequest, idem idempotency.Key) (api.SecurityAnswer, error)
	Decide(ctx context.Context, by security.Actor, id string, approve bool, comment string) (security.Decided, error)
}

// Approvals lists the two-person rule's requests (an *approvals.Service).
type Approvals interface {
	List(ctx context.Context, state string) ([]approvals.Request, error)
}

// AuditLog is the audit log as auditors read it (an *audit.Log).
type AuditLog interface {
	List(ctx context.Context, f audit.Filter, start int64, limit int) ([]audit.Entry, int64, error)
	Checkpoint(ctx context.Context) ([]byte, error)
	InclusionProof(ctx context.Context, index, treeSize int64) (*audit.InclusionProof, error)
}

// Deps are the services the console reads and acts through: the admin API's own.
type Deps struct {
	Tokens        Tokens
	Devices       Devices
	Verdicts      Verdicts
	Access        Access
	AppleCommands AppleCommands
	AgentCommands AgentCommands
	Security      Security
	Approvals     Approvals
	Audit         AuditLog
	Policies      PolicyStore
	PolicyActions PolicyActions
	DryRun        DryRunner
	// Enrollments and EnrollmentActions list, create and revoke one-time enrollments.
	Enrollments       EnrollmentList
	EnrollmentActions EnrollmentActions
	// AuditVerifierKey is the audit log's note verifier key, shown for reference only:
	// verification uses the key the user pastes.
	AuditVerifierKey string
	// Auditor records sign-in, sign-out and refused requests.
	Auditor httpapi.Auditor
	// Roles returns the roles (besides admin) the admin API route pattern allows, and false
	// for a pattern the server does not have: the console takes its role table from routes.go.
	Roles func(apiPattern string) ([]tokens.Role, bool)
}

// Option configures a Console.
type Option func(*Console)

// WithClock sets the sessions' clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *Console) { c.now = now } }

// WithIdleTimeout sets how long an unused session lasts (default DefaultIdleTimeout).
func WithIdleTimeout(d time.Duration) Option {
	return func(c *Console) {
		if d > 0 {
			c.idle = d
		}
	}
}

// WithLifetime sets how long any session lasts after sign-in (default DefaultLifetime).
func WithLifetime(d time.Duration) Option {
	return func(c *Console) {
		if d > 0 {
			c.lifetime = d
		}
	}
}

// WithSigninLimit sets how many sign-in attempts (token forms and OIDC starts) one source
// address may make at once (burst) and per second after (rate); default 10, then one every 5 s.
func WithSigninLimit(rate float64, burst int) Option {
	return func(c *Console) { c.signins = enroll.NewLimiter(rate, burst) }
}

// WithSessionDB keeps the sessions in the server's store and nowhere else: every request reads
// its session there, so every server of a database sees a sign-in, a sign-out and an automatic
// logoff at once (see sessions).
func WithSessionDB(db SessionDB) Option { return func(c *Console) { c.sessions.b = dbBackend{db} } }

// WithLogger sets the logger of internal errors.
func WithLogger(l *slog.Logger) Option { return func(c *Console) { c.log = l } }

// Console serves the web console under Prefix.
type Console struct {
	deps     Deps
	now      func() time.Time
	idle     time.Duration
	lifetime time.Duration
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	oidc     *oidcLogin
	sealKey  *seal.Key // seals the OIDC sign-in in flight into its cookie (nil: kept in memory)
	signins  *enroll.Limiter
	// roles are the roles each console route allows, by the admin API pattern it mirrors.
	roles   map[string][]tokens.Role
	handler http.Handler
}

// New builds the console. It fails when a route it mirrors is missing from Deps.Roles.
func New(deps Deps, opts ...Option) (*Console, error) {
	c := &Console{deps: deps, now: time.Now, idle: DefaultIdleTimeout, lifetime: DefaultLifetime, log: slog.Default(),
		sessions: newSessions(maxSessions), roles: map[string][]tokens.Role{}, signins: enroll.NewLimiter(0.2, 10)}
	for _, o := range opts {
		o(c)
	}
	c.sessions.log = c.log
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", staticHandler(static)))
	mux.HandleFunc("GET "+Prefix+"signin", c.signinForm)
	mux.HandleFunc("POST "+Prefix+"signin", c.signin)
	mux.HandleFunc("POST "+Prefix+"signout", c.signout)
	if c.oidc != nil {
		if err := c.oidc.cfg.Validate(); err != nil {
			return nil, err
		}
		mux.HandleFunc("GET "+Prefix+"oidc/login", c.oidcStart)
		mux.HandleFunc("GET "+Prefix+"oidc/callback", c.oidcCallback)
	}
	for _, rt := range c.routes() {
		roles, ok := deps.Roles(rt.api)
		if !ok {
			return nil, fmt.Errorf("console: route %q mirrors %q, which the server does not have", rt.pattern, rt.api)
		}
		c.roles[rt.api] = roles
		mux.Handle(rt.pattern, c.require(rt.api, rt.handler))
	}
	for _, p := range shownPatterns {
		roles, ok := deps.Roles(p)
		if !ok {
			return nil, fmt.Errorf("console: pages show what %q reads, which the server does not have", p)
		}
		c.roles[p] = roles
	}
	mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) { c.notFound(w, r) })
	cop := http.NewCrossOriginProtection()
	c.handler = securityHeaders(cop.Handler(mux))
	return c, nil
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

// route is a console page or action and the admin API route whose roles it takes.
type route struct {
	pattern string
	api     string
	handler handlerFunc
}

// routes lists the console's pages and actions. Each mirrors the admin API route that reads or
// does the same thing, and allows exactly its roles.
func (c *Console) routes() []route {
	return []route{
		{"GET " + Prefix + "{$}", "GET /api/v1/devices", c.overview},
		{"GET " + Prefix + "fleet.csv", "GET /api/v1/devices", c.fleetCSV},
		{"GET " + Prefix + "devices", "GET /api/v1/devices", c.devices},
		{"GET " + Prefix + "devices/{id}", "GET /api/v1/devices/{id}", c.device},
		{"GET " + Prefix + "devices/{id}/drill", "GET /api/v1/audit", c.drillReport},
		{"POST " + Prefix + "devices/{id}/drill", "POST /api/v1/devices/{id}/lock", c.drillRun},
		{"POST " + Prefix + "devices/bulk-lock", "POST /api/v1/devices/{id}/lock", c.bulkLock},
		{"POST " + Prefix + "devices/bulk-assign", "PUT /api/v1/assignments", c.bulkAssign},
		{"POST " + Prefix + "devices/{id}/lock", "POST /api/v1/devices/{id}/lock", c.order(security.Lock)},
		{"POST " + Prefix + "devices/{id}/lost-mode", "POST /api/v1/devices/{id}/lost-mode", c.order(security.LostMode)},
		{"POST " + Prefix + "devices/{id}/wipe", "POST /api/v1/devices/{id}/wipe", c.order(security.Wipe)},
		{"GET " + Prefix + "approvals", "GET /api/v1/approvals", c.approvalList},
		{"POST " + Prefix + "approvals/{id}", "POST /api/v1/approvals/{id}", c.decide},
		{"GET " + Prefix + "audit", "GET /api/v1/audit", c.auditPage},
		{"POST " + Prefix + "audit/verify", "GET /api/v1/audit/proof/inclusion", c.auditVerify},
		{"GET " + Prefix + "audit/checkpoint", "GET /api/v1/audit/checkpoint", c.auditCheckpoint},
		{"GET " + Prefix + "policies", "GET /api/v1/policies", c.policyList},
		{"GET " + Prefix + "policies/{name}", "GET /api/v1/policies/{name}", c.policyView},
		{"POST " + Prefix + "policies/{name}", "PUT /api/v1/policies/{name}", c.policyApply},
		{"POST " + Prefix + "policies/{name}/dry-run", "POST /api/v1/policies/{name}/dry-run", c.policyDryRun},
		{"POST " + Prefix + "assignments", "PUT /api/v1/assignments", c.assign},
		{"GET " + Prefix + "enrollments", "GET /api/v1/enrollments", c.enrollmentList},
		{"POST " + Prefix + "enrollments", "POST /api/v1/enrollments", c.enrollmentCreate},
		{"POST " + Prefix + "enrollments/{id}/revoke", "DELETE /api/v1/enrollments/{id}", c.enrollmentRevoke},
	}
}

// shownPatterns are the admin API routes whose data pages show in part (a section of a page
// appears only to the roles of its route).
var shownPatterns = []string{"GET /api/v1/devices/{id}/commands"}

// may reports whether t may use the console route mirroring apiPattern (admin may use all).
func (c *Console) may(t *tokens.Token, apiPattern string) bool {
	if t == nil {
		return false
	}
	if t.Role == tokens.RoleAdmin {
		return true
	}
	roles, ok := c.roles[apiPattern]
	if !ok {
		return false
	}
	for _, r := range roles {
		if r == t.Role {
			return true
		}
	}
	return false
}

// csp is the pages' Content-Security-Policy: scripts, styles and everything else from the
// console's own origin only; no inline script or style, no eval, no framing.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the headers every console answer carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		next.ServeHTTP(w, r)
	})
}

// staticHandler serves the embedded static files; they change only with the binary.
func staticHandler(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
