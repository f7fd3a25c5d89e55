package tokens

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
)

// Mirror is an in-memory copy of every token record, for a server that must check tokens
// without a read of the store per request, whose store is a database over the network: the
// primary keeps it with its own writes (Create, Revoke), an access replica follows the
// primary's (RefreshTokens). It is a read-only Repository; Authenticate runs the same rules on
// it.
type Mirror struct {
	mu   sync.RWMutex
	byID map[string]*Token
}

// errMirrorWrite is returned by a write to a Mirror: tokens are made and revoked on the store.
var errMirrorWrite = errors.New("tokens: the mirror is read-only")

// Get returns the token with id, or ErrNotFound.
func (m *Mirror) Get(_ context.Context, id string) (*Token, error) {
	m.mu.RLock()
	t := m.byID[id]
	m.mu.RUnlock()
	if t == nil {
		return nil, ErrNotFound
	}
	c := *t
	return &c, nil
}

// Put fails: a mirror is read-only.
func (m *Mirror) Put(context.Context, *Token) error { return errMirrorWrite }

// List returns every token, in no particular order.
func (m *Mirror) List(context.Context) ([]*Token, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Collect(maps.Values(m.byID)), nil
}

// Count returns how many tokens the mirror holds.
func (m *Mirror) Count(context.Context) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byID), nil
}

// set records t, as committed, in the mirror.
func (m *Mirror) set(t *Token) {
	c := *t
	m.mu.Lock()
	m.byID[t.ID] = &c
	m.mu.Unlock()
}

// WithMirror makes Authenticate check tokens against a copy of them in memory, loaded by New
// and kept current by the service's own Create and Revoke and by RefreshTokens, instead of
// reading the store on every request.
func WithMirror() Option { return func(s *Service) { s.mirror = &Mirror{byID: map[string]*Token{}} } }

// RefreshTokens reads the given tokens (all of them when none is given) from the store into the
// service's mirror: a changed token is replaced, a revoked one kept revoked, a deleted one
// dropped. Without a mirror it does nothing.
func (s *Service) RefreshTokens(ctx context.Context, ids ...string) error {
	if s.mirror == nil {
		return nil
	}
	got := map[string]*Token{}
	err := s.st.View(ctx, func(tx Tx) error {
		if len(ids) == 0 {
			all, err := tx.Tokens().List(ctx)
			for _, t := range all {
				got[t.ID] = t
			}
			return err
		}
		for _, id := range ids {
			t, err := tx.Tokens().Get(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			got[id] = t
		}
		return nil
	})
	if err != nil {
		return err
	}
	m := s.mirror
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(ids) == 0 {
		m.byID = got
		return nil
	}
	for _, id := range ids {
		if t := got[id]; t != nil {
			m.byID[id] = t
		} else {
			delete(m.byID, id)
		}
	}
	return nil
}
