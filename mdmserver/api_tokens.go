package mdmserver

import (
	"errors"
	"net/http"
	"time"

	"github.com/halemdm/hale/internal/httpjson"
	"github.com/halemdm/hale/internal/problem"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// tokensStore narrows the server's store to what the token service uses.
func tokensStore(st storage.Store) tokens.Store {
	return storage.Scope(st, func(tx storage.Tx) tokens.Tx { return tx })
}

// tokenView is a token as the API shows it: never its hash.
type tokenView struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	Role      tokens.Role `json:"role"`
	Person    string      `json:"person"`
	State     string      `json:"state"`
	CreatedAt time.Time   `json:"created_at"`
	CreatedBy string      `json:"created_by,omitempty"`
	// CreatedByPerson is the person of the token that created this one.
	CreatedByPerson string    `json:"created_by_person,omitempty"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	RevokedAt       time.Time `json:"revoked_at,omitzero"`
	// Token is the secret, present only in the answer to its creation.
	Token string `json:"token,omitempty"`
}

func viewToken(t *tokens.Token) tokenView {
	return tokenView{ID: t.ID, Name: t.Name, Role: t.Role, Person: t.Person, State: t.State(time.Now()), CreatedAt: t.CreatedAt,
		CreatedBy: t.CreatedBy, CreatedByPerson: t.CreatorPerson, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
}

// POST /api/v1/tokens: {name, role, person, ttl} → 201 {id, token, ...}; the token is shown only
// here. The token belongs to person, or, without one, to the person of the token creating it.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name   string `json:"name"`
		Role   string `json:"role"`
		Person string `json:"person,omitempty"`
		TTL    string `json:"ttl,omitempty"`
	}
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
	t, secret, err := s.tokens.Create(r.Context(), tokens.NewRequest{Name: req.Name, Role: tokens.Role(req.Role), Person: req.Person,
		TTL: ttl, CreatedBy: actor(r), Creator: tokens.FromContext(r.Context())})
	if err != nil {
		problem.BadRequest(w, r, err.Error())
		return
	}
	s.record(r, event{Action: "token.create", Target: t.ID, Details: map[string]string{"name": t.Name, "role": string(t.Role), "person": t.Person}})
	v := viewToken(t)
	v.Token = secret
	httpjson.Write(w, http.StatusCreated, v)
}

// GET /api/v1/tokens
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.tokens.List(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := make([]tokenView, 0, len(list))
	for _, t := range list {
		out = append(out, viewToken(t))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"tokens": out})
}

// DELETE /api/v1/tokens/{id}
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	t, err := s.tokens.Revoke(r.Context(), r.PathValue("id"))
	if errors.Is(err, tokens.ErrNotFound) {
		problem.NotFound(w, r, "no token "+r.PathValue("id"))
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	s.record(r, event{Action: "token.revoke", Target: t.ID, Details: map[string]string{"name": t.Name}})
	httpjson.Write(w, http.StatusOK, viewToken(t))
}
