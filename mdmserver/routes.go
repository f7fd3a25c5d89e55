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

	// Apple MDM protocol (nanomdm).
	mux.Handle("/mdm", s.mdmHandler())

	// Admin API.
	mux.Handle("PUT /api/v1/pushcert", role(s.putPushCert))
	mux.Handle("GET /api/v1/pushcert", role(s.listPushCerts, tokens.RoleIT))
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
