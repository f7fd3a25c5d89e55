package mdmserver

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// routes is the one place every endpoint and the roles it allows are listed.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	role := func(h http.HandlerFunc, roles ...tokens.Role) http.Handler {
		return s.tokens.Require(s.log, h, roles...)
	}

	// Operations.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))

	// Apple MDM protocol (nanomdm), enrollment profiles and SCEP.
	mux.Handle("/mdm", s.mdmHandler())
	mux.HandleFunc("GET /enroll/apple/{token}", s.appleProfile)
	mux.Handle("/scep", s.scep)

	// The certificate authority.
	mux.Handle("GET /ca/root.pem", s.ca.RootHandler())
	mux.Handle("GET /ca/crl", s.ca.CRLHandler())

	// Agent API: enrollment by token, everything else by device certificate.
	mux.HandleFunc("POST /agent/v1/enroll", s.agentEnroll)
	mux.Handle("POST /agent/v1/renew", s.requireDevice(s.agentRenew))
	mux.Handle("GET /agent/v1/nonce", s.requireDevice(s.agentNonce))
	mux.Handle("POST /agent/v1/report", s.requireDevice(s.agentReport))
	mux.Handle("GET /agent/v1/policy", s.requireDevice(s.agentPolicy))
	mux.Handle("GET /agent/v1/commands", s.requireDevice(s.agentCommands))
	mux.Handle("POST /agent/v1/commands/{id}/result", s.requireDevice(s.agentCommandResult))

	// Admin API.
	mux.Handle("POST /api/v1/tokens", role(s.createToken))
	mux.Handle("GET /api/v1/tokens", role(s.listTokens))
	mux.Handle("DELETE /api/v1/tokens/{id}", role(s.revokeToken))
	mux.Handle("PUT /api/v1/pushcert", role(s.putPushCert))
	mux.Handle("GET /api/v1/pushcert", role(s.listPushCerts, tokens.RoleIT))
	mux.Handle("POST /api/v1/enrollments", role(s.createEnrollment, tokens.RoleIT))
	mux.Handle("GET /api/v1/enrollments", role(s.listEnrollments, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("DELETE /api/v1/enrollments/{id}", role(s.revokeEnrollment, tokens.RoleIT, tokens.RoleSecurity))
	mux.Handle("GET /api/v1/devices", role(s.listDevices, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("GET /api/v1/devices/{id}", role(s.getDevice, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("DELETE /api/v1/devices/{id}", role(s.unenrollDevice, tokens.RoleIT, tokens.RoleSecurity))
	mux.Handle("PUT /api/v1/policies/{name}", role(s.putPolicy, tokens.RoleIT))
	mux.Handle("GET /api/v1/policies/{name}", role(s.getPolicy, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("DELETE /api/v1/policies/{name}", role(s.deletePolicy, tokens.RoleIT))
	mux.Handle("GET /api/v1/policies", role(s.listPolicies, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("POST /api/v1/policies/{name}/dry-run", role(s.dryRunPolicy, tokens.RoleIT, tokens.RoleSecurity))
	mux.Handle("PUT /api/v1/assignments", role(s.putAssignment, tokens.RoleIT))

	// Access API for the messaging backend.
	mux.Handle("GET /access/v1/devices/{id}", role(s.accessDevice, tokens.RoleAccess))

	mux.Handle("POST /api/v1/devices/{id}/lock", role(s.lockDevice, tokens.RoleIT, tokens.RoleSecurity))
	mux.Handle("POST /api/v1/devices/{id}/lost-mode", role(s.lostMode, tokens.RoleSecurity))
	mux.Handle("POST /api/v1/devices/{id}/wipe", role(s.wipeDevice, tokens.RoleSecurity))
	mux.Handle("GET /api/v1/audit", role(s.listAudit, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("GET /api/v1/audit/export", role(s.exportAudit, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("GET /api/v1/audit/checkpoint", role(s.auditCheckpoint, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("POST /api/v1/devices/{id}/commands", role(s.postCommand, tokens.RoleIT, tokens.RoleSecurity))
	mux.Handle("GET /api/v1/devices/{id}/commands", role(s.listCommands, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))
	mux.Handle("GET /api/v1/devices/{id}/commands/{uuid}", role(s.getCommand, tokens.RoleIT, tokens.RoleSecurity, tokens.RoleAuditor))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.NotFound(w, r, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 only when the store is open and a write commits.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.ErrorContext(ctx, "readiness check failed", "err", err)
		problem.Error(w, r, http.StatusServiceUnavailable, "not-ready", "the store is not writable: "+err.Error())
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ready"})
}
