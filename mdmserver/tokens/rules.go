package tokens

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// NewRequest describes a token to create.
type NewRequest struct {
	Name string
	Role Role
	// Person is who the token belongs to. Empty: the creator's person, or (with no creator)
	// a person named after the token.
	Person    string
	TTL       time.Duration // zero: never expires
	CreatedBy string
	// Creator is the token that creates this one, nil for the server's own (bootstrap).
	Creator *Token
}

// Create makes a token at now and stores its record, and returns the record and the secret
// token string, which is never available again.
func Create(ctx context.Context, repo Repository, req NewRequest, now time.Time) (*Token, string, error) {
	if !req.Role.Valid() {
		return nil, "", fmt.Errorf("tokens: unknown role %q (want one of %v)", req.Role, Roles)
	}
	if req.Name == "" || len(req.Name) > 128 {
		return nil, "", errors.New("tokens: name must be 1 to 128 characters")
	}
	if req.TTL < 0 {
		return nil, "", errors.New("tokens: ttl must not be negative")
	}
	person := req.Person
	switch {
	case person != "":
	case req.Creator != nil:
		person = req.Creator.Person
	default:
		person = req.Name
	}
	if err := ValidPerson(person); err != nil {
		return nil, "", err
	}
	id, secret := randid.Hex(8), randid.Hex(32)
	now = now.UTC()
	t := &Token{ID: id, Name: req.Name, Role: req.Role, Person: person, CreatedAt: now, CreatedBy: req.CreatedBy, Hash: hashSecret(secret)}
	if req.Creator != nil {
		t.CreatorTokenID, t.CreatorPerson = req.Creator.ID, req.Creator.Person
	}
	if req.TTL > 0 {
		t.ExpiresAt = now.Add(req.TTL)
	}
	if err := repo.Put(ctx, t); err != nil {
		return nil, "", err
	}
	return t, prefix + id + "_" + secret, nil
}

// Authenticate returns the token a presented token string proves, if it is active at now: the
// ID finds the record, the secret's hash must match it in constant time.
func Authenticate(ctx context.Context, repo Repository, presented string, now time.Time) (*Token, error) {
	id, secret, ok := parse(presented)
	if !ok {
		return nil, ErrMalformed
	}
	t, err := repo.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hashSecret(secret))) != 1 {
		return nil, ErrUnknown
	}
	switch t.State(now) {
	case "revoked":
		return nil, ErrRevoked
	case "expired":
		return nil, ErrExpired
	}
	return t, nil
}

// Revoke marks token id revoked at now. Revoking twice keeps the first time.
func Revoke(ctx context.Context, repo Repository, id string, now time.Time) (*Token, error) {
	t, err := repo.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.RevokedAt.IsZero() {
		t.RevokedAt = now.UTC()
	}
	if err := repo.Put(ctx, t); err != nil {
		return nil, err
	}
	return t, nil
}
