package mdmserver

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/halemdm/hale/mdmserver/console"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// newConsole builds the web console (package console) on the services the admin API uses. Its
// pages and actions take their roles from tokenRoutes, the admin API's own table, so the
// console allows exactly what the JSON API allows.
func (s *Server) newConsole() (*console.Console, error) {
	routes := s.tokenRoutes()
	roles := func(pattern string) ([]tokens.Role, bool) {
		i := slices.IndexFunc(routes, func(rt tokenRoute) bool { return rt.pattern == pattern })
		if i < 0 {
			return nil, false
		}
		return routes[i].roles, true
	}
	opts := []console.Option{
		// The sessions in the store only, read on every request: every server of a database
		// sees a sign-in, a sign-out and an automatic logoff at once. An OIDC sign-in in flight
		// travels sealed in its cookie, so the provider's callback may reach any server.
		console.WithSessionDB(storage.Scope(s.store, func(tx storage.Tx) console.SessionTx { return tx })), console.WithSealKey(s.key),
		console.WithClock(s.now), console.WithIdleTimeout(s.cfg.ConsoleIdleTimeout),
		console.WithLifetime(s.cfg.ConsoleSessionLifetime), console.WithLogger(s.log.With("component", "console"))}
	if oc := s.cfg.ConsoleOIDC; oc.Enabled() {
		secret, err := os.ReadFile(oc.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("console_oidc.client_secret_file: %w", err)
		}
		opts = append(opts, console.WithOIDC(oc, strings.TrimSpace(string(secret)),
			strings.TrimSuffix(s.cfg.PublicURL, "/")+console.Prefix+"oidc/callback", &http.Client{Timeout: 15 * time.Second}))
	}
	return console.New(console.Deps{
		Tokens: s.tokens, Devices: s.inventory, Verdicts: s.compliance, Access: s.index,
		AppleCommands: s.commands, AgentCommands: s.agentQueue, Security: s.security, Approvals: s.approvals,
		Audit: s.audit, Policies: s.policies, PolicyActions: s.policyAPI, DryRun: s.compliance,
		Enrollments: s.enrollments, EnrollmentActions: s.enrollmentAPI, AuditVerifierKey: s.auditKey, Auditor: s.auditor(), Roles: roles,
	}, opts...)
}
