package mdmserver

import (
	"net/http"
	"strings"

	"github.com/halemdm/hale/internal/problem"
)

// allowProbes are the methods a 405 answer's Allow header may name, in the order it names them.
var allowProbes = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// unrouted answers what no route of mux took: 405 with an Allow header when the path exists
// for other methods, 404 otherwise, both as problem+json. It serves mux's catch-all "/"
// pattern, which would otherwise hide ServeMux's own 405 (a text/plain one) behind a 404.
func unrouted(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			list := strings.Join(allow, ", ")
			w.Header().Set("Allow", list)
			problem.Error(w, r, http.StatusMethodNotAllowed, "method-not-allowed",
				r.Method+" is not allowed on this endpoint; it accepts "+list)
			return
		}
		problem.NotFound(w, r, "no such endpoint: "+r.Method+" "+r.URL.Path)
	}
}

// allowedMethods returns the methods for which mux routes r's path to a pattern of its own
// rather than to the catch-all. It looks the path up once per probed method, only on this
// error path.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	probe := r.WithContext(r.Context()) // a shallow copy whose method can change
	for _, m := range allowProbes {
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}
