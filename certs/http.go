package certs

import (
	"net/http"
	"strconv"

	"github.com/halemdm/hale/internal/problem"
)

// RootHandler serves the root certificate as PEM (GET /ca/root.pem).
func (a *Authority) RootHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Length", strconv.Itoa(len(a.rootPEM)))
		w.Header().Set("Cache-Control", "public, max-age=86400")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(a.rootPEM)
	})
}

// CRLHandler serves the current DER CRL (GET /ca/crl).
func (a *Authority) CRLHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		der, err := a.CRL(r.Context())
		if err != nil {
			a.logger.Error("serve CRL", "err", err)
			problem.Error(w, r, http.StatusInternalServerError, "crl-unavailable", "The certificate revocation list could not be produced; see the server log.")
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Content-Length", strconv.Itoa(len(der)))
		// Short caching: a revocation must reach relying parties soon.
		w.Header().Set("Cache-Control", "public, max-age=300")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(der)
	})
}

func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "Use GET or HEAD.")
	return false
}
