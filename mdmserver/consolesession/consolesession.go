// Package consolesession is the web console's sessions as the store keeps them, so that a
// restart does not sign everyone out. Package console owns the rules (expiry, CSRF); this
// package only names the record and the repository a storage backend implements.
package consolesession

import (
	"context"
	"time"

	"github.com/halemdm/hale/mdmserver/tokens"
)

// Session is one signed-in browser. The cookie value itself is never stored: Key is its
// SHA-256, so a copy of the store cannot take a session over.
type Session struct {
	// Key is the hex SHA-256 of the session cookie's value.
	Key string `json:"key"`
	// TokenID is the API token signed in with (read again on every request), or the OIDC
	// identity's ID.
	TokenID string `json:"token_id"`
	// Via is "token" or "oidc".
	Via string `json:"via"`
	// Who is the identity at sign-in, without its secret's hash: what an OIDC session acts as,
	// and what the record of an expiry names.
	Who tokens.Token `json:"who"`
	// CSRF is the token the session's forms carry.
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	// Flash and FlashKind are a one-time message for the session's next page (the outcome of
	// an action), kept with the session so that the page shows it whichever server serves it.
	Flash     string `json:"flash,omitempty"`
	FlashKind string `json:"flash_kind,omitempty"`
}

// Repository keeps the sessions of one unit of work.
type Repository interface {
	// Get returns the session with key, or nil (and no error) when there is none.
	Get(ctx context.Context, key string) (*Session, error)
	// Put stores s under s.Key, replacing what was there.
	Put(ctx context.Context, s *Session) error
	// Delete removes the session with key; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// List returns every stored session.
	List(ctx context.Context) ([]Session, error)
}
