package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/halemdm/hale/api"
	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// TokenStore creates, lists and revokes API tokens (a *tokens.Service).
type TokenStore interface {
	Create(ctx context.Context, req tokens.NewRequest) (t *tokens.Token, secret string, err error)
	List(ctx context.Context) ([]*tokens.Token, error)
	Revoke(ctx context.Context, id string) (*tokens.Token, error)
}

// Tokens serves /api/v1/tokens: the bearer tokens of the admin, access and event stream APIs.
type Tokens struct {
	// Tokens keeps the tokens.
	Tokens TokenStore
	// Auditor records what is created and revoked.
	Auditor httpapi.Auditor
	// Log receives internal errors.
	Log *slog.Logger
}

// Create is POST /api/v1/tokens: {name, role, person, ttl} → 201 {id, token, ...}; the secret is
// shown only here. The token belongs to person, or, without one, to the person of the token
// creating it.
func (h *Tokens) Create(w http.ResponseWriter, r *http.Request) {
	var req api.TokenRequest
	if !problem.DecodeJSON(w, r, 4<<10, &req) {
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl < time.Minute {
			problem.BadRequest(w, r, "ttl must be a duration of at least 1m, such as 720h")
			return
		}
	}
	if req.Person != "" {
		if err := tokens.ValidPerson(req.Person); err != nil {
			problem.BadRequest(w, r, "person: "+err.Error())
			return
		}
	}
	t, secret, err := h.Tokens.Create(r.Context(), tokens.NewRequest{Name: req.Name, Role: tokens.Role(req.Role), Person: req.Person,
		TTL: ttl, CreatedBy: httpapi.Actor(r), Creator: tokens.FromContext(r.Context())})
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "token.create", Target: t.ID,
		Details: map[string]string{"name": t.Name, "role": string(t.Role), "person": t.Person}})
	v := token(t)
	v.Token = secret
	httpjson.Write(w, http.StatusCreated, v)
}

// List is GET /api/v1/tokens: every token, never its secret or hash.
func (h *Tokens) List(w http.ResponseWriter, r *http.Request) {
	list, err := h.Tokens.List(r.Context())
	if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	out := api.Tokens{Tokens: make([]api.Token, len(list))}
	for i, t := range list {
		out.Tokens[i] = token(t)
	}
	httpjson.Write(w, http.StatusOK, out)
}

// Revoke is DELETE /api/v1/tokens/{id}: the token stops working at once.
func (h *Tokens) Revoke(w http.ResponseWriter, r *http.Request) {
	t, err := h.Tokens.Revoke(r.Context(), r.PathValue("id"))
	if errors.Is(err, tokens.ErrNotFound) {
		problem.NotFound(w, r, "no token "+r.PathValue("id"))
		return
	} else if err != nil {
		httpapi.Internal(h.Log, w, r, err)
		return
	}
	_ = h.Auditor.Record(r, httpapi.Event{Action: "token.revoke", Target: t.ID, Details: map[string]string{"name": t.Name}})
	httpjson.Write(w, http.StatusOK, token(t))
}

// token is the wire form of a token: never its hash, and its state now.
func token(t *tokens.Token) api.Token {
	return api.Token{ID: t.ID, Name: t.Name, Role: string(t.Role), Person: t.Person, State: t.State(time.Now()), CreatedAt: t.CreatedAt,
		CreatedBy: t.CreatedBy, CreatedByPerson: t.CreatorPerson, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
}
