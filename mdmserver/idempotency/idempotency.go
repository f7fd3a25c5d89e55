// Package idempotency keeps the answers given to requests that carried an Idempotency-Key, so
// that a client retrying after a lost answer or a failure gets the first answer back instead of
// acting twice (a second lock, a second wipe).
//
// A [Repository] stores an answer under its [Key]; [Load] and [Save] are the rules over it.
// Save runs in the unit of work that carries the request out, so the answer is on record
// exactly when what it reports is.
package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxKeyLen is the longest Idempotency-Key a client may send, in bytes.
const MaxKeyLen = 128

// Anonymous is the owner of keys sent without an API token.
const Anonymous = "anonymous"

// ErrNotFound is returned by a Repository that holds no answer for a key.
var ErrNotFound = errors.New("idempotency: no answer for this key")

// ErrInvalid is returned for a key longer than MaxKeyLen.
var ErrInvalid = errors.New("idempotency: invalid key")

// Key names one Idempotency-Key as a client sent it: a key belongs to the caller that sent it
// and the route it was sent to, so that two callers (or one caller on two routes) never share an
// answer.
type Key struct {
	// Owner is the API token's ID (Anonymous without one).
	Owner string
	// Route is the request's path.
	Route string
	// Key is the Idempotency-Key header's value.
	Key string
}

// NewKey returns the key a client sent with header value key to route; an empty owner is
// Anonymous.
func NewKey(owner, route, key string) Key {
	if owner == "" {
		owner = Anonymous
	}
	return Key{Owner: owner, Route: route, Key: key}
}

// Repository stores answers by key. It belongs to one transaction of its backend: what Put
// writes commits with everything else written in that transaction, or not at all.
type Repository interface {
	// Get returns the answer saved under k, as the JSON it was saved as, or ErrNotFound.
	Get(ctx context.Context, k Key) (json.RawMessage, error)
	// Put saves answer under k, replacing any answer saved before.
	Put(ctx context.Context, k Key, answer json.RawMessage) error
}

// Tx is what idempotency needs of a unit of work: its repository.
type Tx interface {
	Idempotency() Repository
}

// Load decodes into v the answer saved under k and reports whether there was one. An answer that
// no longer decodes into v counts as none: the request is then carried out as new.
func Load(ctx context.Context, r Repository, k Key, v any) (bool, error) {
	raw, err := r.Get(ctx, k)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return json.Unmarshal(raw, v) == nil, nil
}

// Save saves v, as JSON, as the answer to k.
func Save(ctx context.Context, r Repository, k Key, v any) error {
	if len(k.Key) > MaxKeyLen {
		return fmt.Errorf("%w: Idempotency-Key is at most %d characters", ErrInvalid, MaxKeyLen)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.Put(ctx, k, raw)
}
