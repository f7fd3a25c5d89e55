package mdmserver

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/android"
	"github.com/halemdm/hale/mdmserver/console"
	"github.com/halemdm/hale/mdmserver/openapi"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// routes is the one place every endpoint and the roles it allows are listed.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	// Operations.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /api/v1/openapi.json", openapi.Handler()) // the API's OpenAPI document: no token

	// Apple MDM protocol (nanomdm), enrollment profiles and SCEP.
	mux.HandleFunc("/mdm", s.apple.ServeMDM)
	mux.HandleFunc("GET /enroll/apple/{token}", s.apple.EnrollmentProfile)
	// Account-driven User Enrollment of personal devices: discovery, enrollment, sign-in.
	mux.HandleFunc("GET /.well-known/com.apple.remotemanagement", s.apple.RemoteManagement)
	mux.HandleFunc("GET /enroll/apple/byod", s.apple.BYODEnroll)
	mux.HandleFunc("POST /enroll/apple/byod", s.apple.BYODEnroll)
	mux.HandleFunc("GET /enroll/apple/byod/signin", s.apple.SignIn)
	mux.HandleFunc("POST /enroll/apple/byod/signin", s.apple.SignIn)
	mux.Handle("/scep", s.apple.SCEP())
	// The profiles of legacy declarations (apple_ddm): a MAC in the URL, no token.
	mux.HandleFunc("GET /ddm/profiles/{device}/{kind}/{hash}/{mac}", s.serveLegacyProfile) // ddm.ProfilePath

	// The certificate authority.
	mux.Handle("GET /ca/root.pem", s.ca.RootHandler())
	mux.Handle("GET /ca/crl", s.ca.CRLHandler())

	// Agent API: enrollment by token, everything else by device certificate.
	agent := s.agentAPI
	mux.HandleFunc("POST /agent/v1/enroll", agent.Enroll)
	mux.Handle("POST /agent/v1/renew", agent.RequireDevice(agent.Renew))
	mux.Handle("GET /agent/v1/nonce", agent.RequireDevice(agent.Nonce))
	mux.Handle("POST /agent/v1/report", agent.RequireDevice(agent.Report))
	mux.Handle("GET /agent/v1/policy", agent.RequireDevice(agent.Policy))
	mux.Handle("GET /agent/v1/commands", agent.RequireDevice(agent.Commands))
	mux.Handle("POST /agent/v1/commands/{id}/result", agent.RequireDevice(agent.CommandResult))
	// A desktop app's key-bound token, asked by the agent for an app on its local endpoint.
	mux.Handle("POST /agent/v1/app-token", agent.RequireDevice(s.agentAppTokens.Issue))
	mux.Handle("POST /agent/v1/break-glass", agent.RequireDevice(s.breakGlassAPI.Device))
	mux.Handle("POST /agent/v1/my-device-link", agent.RequireDevice(s.myDevice.Link))

	// The "my device" page: the sealed link from /agent/v1/my-device-link is its credential.
	mux.HandleFunc("GET /my-device/style.css", s.myDevice.Style)
	mux.HandleFunc("GET /my-device/{token}", s.myDevice.Page)
	mux.HandleFunc("POST /my-device/{token}/check", s.myDevice.Check)
	mux.HandleFunc("POST /my-device/{token}/break-glass", s.myDevice.StartBreakGlass)

	// The messaging app's API: the attestation, binding token and key signatures are its
	// credentials (app_wiring.go).
	mux.HandleFunc("POST /app/v1/nonce", s.appAPI.Nonce)
	mux.HandleFunc("POST /app/v1/register", s.appAPI.Register)
	mux.HandleFunc("POST /app/v1/report", s.appAPI.Report)
	mux.HandleFunc("POST /app/v1/token", s.appAPI.Token)
	mux.HandleFunc("POST /app/v1/my-device-link", s.appAPI.MyDeviceLink)
	// Android Management API notifications, pushed by Pub/Sub with Google's ID token.
	mux.HandleFunc("POST "+android.PushPath, s.android.Push)
	mux.HandleFunc("GET "+android.SignupPath, s.android.SignupComplete)

	// Access API for devices and for anyone verifying what the server signed.
	mux.Handle("POST /access/v1/token", agent.RequireDevice(s.accessAPI.Token))
	mux.Handle("GET /access/v1/jwks.json", s.keys.Handler())
	mux.Handle("GET /.well-known/ssf-configuration", s.events.ConfigurationHandler())

	// Admin and access APIs: bearer tokens, roles per route (admin may do everything).
	for _, rt := range s.tokenRoutes() {
		mux.Handle(rt.pattern, s.tokens.Require(s.log, rt.handler, rt.roles...))
	}

	// The web console: its own sign-in and sessions, and the roles of the admin API routes its
	// pages mirror (console_wiring.go). HTML, not API: it is not in the OpenAPI document.
	mux.Handle(console.Prefix, s.console)

	// Everything else: 405 with Allow for a known path, 404 for an unknown one.
	mux.HandleFunc("/", unrouted(mux))
	return mux
}

// tokenRoute is an endpoint that needs a bearer token, and the roles (besides admin) it allows.
type tokenRoute struct {
	pattern string
	handler http.HandlerFunc
	roles   []tokens.Role
}

// tokenRoutes lists every token-authenticated endpoint with the roles it allows (nil: admin
// only; admin is allowed everywhere): the one place
// an auditor reads who may do what (and the role table test walks).
func (s *Server) tokenRoutes() []tokenRoute {
	return []tokenRoute{
		{"POST /api/v1/tokens", s.tokenAPI.Create, nil},
		{"GET /api/v1/tokens", s.tokenAPI.List, []tokens.Role{tokens.RoleAuditor}}, // names and roles, never secrets
		{"DELETE /api/v1/tokens/{id}", s.tokenAPI.Revoke, nil},
		{"PUT /api/v1/pushcert", s.pushCertAPI.Put, nil},
		{"GET /api/v1/backup", s.backupAPI.Get, nil},
		{"PUT /api/v1/android/binding", s.androidAPI.Bind, nil},
		{"POST /api/v1/android/signup", s.androidAPI.Signup, nil},
		{"GET /api/v1/android/binding", s.androidAPI.Get, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/pushcert", s.pushCertAPI.List, []tokens.Role{tokens.RoleIT}},
		{"POST /api/v1/enrollments", s.enrollmentAPI.Create, []tokens.Role{tokens.RoleIT}},
		{"GET /api/v1/enrollments", s.enrollmentAPI.List, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"DELETE /api/v1/enrollments/{id}", s.enrollmentAPI.Revoke, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity}},
		{"GET /api/v1/devices", s.deviceAPI.List, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/devices/{id}", s.deviceAPI.Get, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/devices/{id}/access", s.deviceAPI.Access, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"POST /api/v1/devices/{id}/app-bindings", s.appAPI.CreateBinding, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity}},
		{"GET /api/v1/devices/{id}/app-instances", s.appAPI.ListInstances, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"DELETE /api/v1/devices/{id}", s.securityAPI.Unenroll, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity}},
		{"PUT /api/v1/policies/{name}", s.policyAPI.Put, []tokens.Role{tokens.RoleIT}},
		{"GET /api/v1/policies/{name}", s.policyAPI.Get, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"DELETE /api/v1/policies/{name}", s.policyAPI.Delete, []tokens.Role{tokens.RoleIT}},
		{"GET /api/v1/policies", s.policyAPI.List, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"POST /api/v1/policies/{name}/dry-run", s.policyAPI.DryRunPolicy, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity}},
		{"PUT /api/v1/assignments", s.policyAPI.Assign, []tokens.Role{tokens.RoleIT}},
		{"GET /access/v1/devices/{id}", access.RemediationHandler(s.index, s.cfg.helpDesk()), []tokens.Role{tokens.RoleAccess}},
		{"POST /access/v1/check", s.accessAPI.Check, []tokens.Role{tokens.RoleAccess}},
		// Security event streams (OpenID SSF 1.0): each belongs to the token that created it,
		// which alone may poll, change or verify it; admin, security and auditor read every
		// stream, admin and security delete any (events_wiring.go streamCaller).
		{"POST /ssf/v1/streams/{id}/poll", s.events.PollHandler().ServeHTTP, []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"POST /ssf/v1/stream", s.audited("event_stream.create", s.events.CreateStreamHandler()), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"GET /ssf/v1/stream", s.events.GetStreamHandler().ServeHTTP, []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"PATCH /ssf/v1/stream", s.audited("event_stream.update", s.events.UpdateStreamHandler(false)), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"PUT /ssf/v1/stream", s.audited("event_stream.replace", s.events.UpdateStreamHandler(true)), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"DELETE /ssf/v1/stream", s.audited("event_stream.delete", s.events.DeleteStreamHandler()), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"GET /ssf/v1/status", s.events.GetStatusHandler().ServeHTTP, []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"POST /ssf/v1/status", s.audited("event_stream.status", s.events.SetStatusHandler()), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"POST /ssf/v1/subjects/add", s.audited("event_stream.subject_add", s.events.SubjectHandler(false)), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"POST /ssf/v1/subjects/remove", s.audited("event_stream.subject_remove", s.events.SubjectHandler(true)), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"POST /ssf/v1/verify", s.audited("event_stream.verify", s.events.VerifyHandler()), []tokens.Role{tokens.RoleAccess, tokens.RoleSecurity}},
		{"POST /api/v1/devices/{id}/lock", s.securityAPI.Lock, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity}},
		{"POST /api/v1/devices/{id}/lost-mode", s.securityAPI.LostMode, []tokens.Role{tokens.RoleSecurity}},
		{"POST /api/v1/devices/{id}/wipe", s.securityAPI.Wipe, []tokens.Role{tokens.RoleSecurity}},
		{"GET /api/v1/approvals", s.approvalAPI.List, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"POST /api/v1/approvals/{id}", s.approvalAPI.Decide, []tokens.Role{tokens.RoleSecurity}},
		{"GET /api/v1/audit", s.auditAPI.List, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		// The auditor's evidence pack (mdmctl evidence): coverage, configuration, signed manifest.
		{"GET /api/v1/reports/coverage", s.evidenceAPI.Coverage, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/config", s.evidenceAPI.ServerConfig, []tokens.Role{tokens.RoleAuditor}},
		{"POST /api/v1/evidence/manifest", s.evidenceAPI.SignManifest, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/audit/export", s.auditAPI.Export, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/audit/checkpoint", s.auditAPI.Checkpoint, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/audit/proof/inclusion", s.auditAPI.InclusionProof, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/audit/proof/consistency", s.auditAPI.ConsistencyProof, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"POST /api/v1/devices/{id}/commands", s.commandAPI.Post, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity}},
		{"GET /api/v1/devices/{id}/commands", s.commandAPI.List, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/devices/{id}/commands/{uuid}", s.commandAPI.Get, []tokens.Role{tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/devices/{id}/commands/{uuid}/pin", s.securityAPI.PIN, []tokens.Role{tokens.RoleSecurity}},
		// Emergency access (breakglass_wiring.go): security grants and reviews; auditors read.
		{"POST /api/v1/devices/{id}/break-glass", s.breakGlassAPI.Grant, []tokens.Role{tokens.RoleSecurity}},
		{"GET /api/v1/break-glass", s.breakGlassAPI.List, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"GET /api/v1/break-glass/{id}", s.breakGlassAPI.Get, []tokens.Role{tokens.RoleSecurity, tokens.RoleAuditor}},
		{"POST /api/v1/break-glass/{id}/review", s.breakGlassAPI.Review, []tokens.Role{tokens.RoleSecurity}},
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 only when the store is open and a write commits, and, on an access
// replica, it has caught up with the database's changes.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if f := s.index.FreshUntil(); !f.IsZero() && time.Now().After(f) {
		problem.Error(w, r, http.StatusServiceUnavailable, "not-ready", "this replica has not caught up with the database's changes")
		return
	}
	if err := s.store.Ping(ctx); err != nil {
		s.log.ErrorContext(ctx, "readiness check failed", "err", err)
		problem.Error(w, r, http.StatusServiceUnavailable, "not-ready", "the store is not writable: "+err.Error())
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ready"})
}
