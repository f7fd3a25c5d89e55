package tokens

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/halemdm/hale/internal/problem"
)

type ctxKey struct{}

// FromContext returns the authenticated token of a request, or nil.
func FromContext(ctx context.Context) *Token {
	t, _ := ctx.Value(ctxKey{}).(*Token)
	return t
}

// WithToken returns ctx carrying t (used by the middleware, and by tests).
func WithToken(ctx context.Context, t *Token) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// Require wraps next so that only requests bearing an active token with one of roles reach it.
// Admin is always allowed. No or a bad token answers 401 with a WWW-Authenticate challenge; a
// valid token in another role answers 403.
func (s *Service) Require(log *slog.Logger, next http.Handler, roles ...Role) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := bearer(r)
		if !ok {
			unauthorized(w, r, "send Authorization: Bearer <token>")
			return
		}
		t, err := s.Authenticate(r.Context(), presented)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknown) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRevoked) {
				// The store cannot be read (a database restarting, a replica cut off from it):
				// the caller may retry, here or on another server.
				log.ErrorContext(r.Context(), "token lookup failed", "err", err)
				w.Header().Set("Retry-After", "1")
				problem.Error(w, r, http.StatusServiceUnavailable, "store-unavailable",
					"the server cannot read its store now; retry, or ask another server")
				return
			}
			log.InfoContext(r.Context(), "bearer token refused", "reason", err.Error(), "remote", r.RemoteAddr)
			unauthorized(w, r, "the bearer token is unknown, expired or revoked")
			return
		}
		if t.Role != RoleAdmin && !slices.Contains(roles, t.Role) {
			if s.onForbidden != nil {
				s.onForbidden(r, t)
			}
			problem.Error(w, r, http.StatusForbidden, "forbidden",
				"role "+string(t.Role)+" may not do this; allowed: "+joinRoles(roles))
			return
		}
		next.ServeHTTP(w, r.WithContext(WithToken(r.Context(), t)))
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="hale"`)
	problem.Error(w, r, http.StatusUnauthorized, "unauthorized", detail)
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func joinRoles(roles []Role) string {
	s := []string{string(RoleAdmin)}
	for _, r := range roles {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}
