package mdmserver

import (
	"net/http"

	"github.com/halemdm/hale/mdmserver/httpapi"
)

// actor names the caller of an admin request (httpapi.Actor).
func actor(r *http.Request) string { return httpapi.Actor(r) }

// internal logs err and answers a generic 500 (httpapi.Internal).
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.Internal(s.log, w, r, err)
}
