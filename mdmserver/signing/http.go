package signing

import (
	"net/http"
	"strconv"

	"github.com/halemdm/hale/internal/problem"
)

// jwksCacheControl lets verifiers and proxies cache the key set briefly. A verifier that meets
// an unknown kid (a key rotated in within this window) must refetch rather than reject.
const jwksCacheControl = "max-age=300"

// Handler serves the JWKS (mount it at the jwks.json route). It writes the cached bytes, rebuilt
// only when the set of published keys changes, so a request costs no marshalling.
func (k *Keyset) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed", "the key set is read with GET")
			return
		}
		b := k.cachedJWKS()
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", jwksCacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	})
}
