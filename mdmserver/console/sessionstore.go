package console

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/halemdm/hale/mdmserver/consolesession"
)

// SessionTx is what the console needs of a unit of work of the server's store: its sessions.
type SessionTx interface {
	ConsoleSessions() consolesession.Repository
}

// SessionDB runs the console's units of work on the server's store
// (storage.Scope(st, func(tx storage.Tx) console.SessionTx { return tx }) is one).
type SessionDB interface {
	// View runs fn on one consistent snapshot.
	View(ctx context.Context, fn func(SessionTx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(SessionTx) error) error
}

// backend is where the session table lives. Each method is one unit of work: a check and the
// write it decides happen together.
type backend interface {
	// get returns the session with key, or nil.
	get(ctx context.Context, key string) (*consolesession.Session, error)
	// add stores r unless max sessions are open: when full it first deletes those expired
	// says have ended, then refuses with errTooManySessions if still full.
	add(ctx context.Context, r *consolesession.Session, max int, expired func(created, lastSeen time.Time) bool) error
	// update runs fn on the stored session with key and stores it when fn reports a change;
	// a missing session is left missing.
	update(ctx context.Context, key string, fn func(*consolesession.Session) bool) error
	// removeIf deletes the session with key when it is there and cond (nil: always) holds of
	// it, and reports whether it did.
	removeIf(ctx context.Context, key string, cond func(*consolesession.Session) bool) (bool, error)
	// list returns every session.
	list(ctx context.Context) ([]consolesession.Session, error)
}

// dbBackend keeps the sessions in the server's store only: every server of a database reads
// the same table.
type dbBackend struct{ db SessionDB }

func (b dbBackend) get(ctx context.Context, key string) (r *consolesession.Session, err error) {
	err = b.db.View(ctx, func(tx SessionTx) error {
		r, err = tx.ConsoleSessions().Get(ctx, key)
		return err
	})
	return r, err
}

func (b dbBackend) add(ctx context.Context, r *consolesession.Session, max int, expired func(created, lastSeen time.Time) bool) error {
	return b.db.Update(ctx, func(tx SessionTx) error {
		repo := tx.ConsoleSessions()
		list, err := repo.List(ctx)
		if err != nil {
			return err
		}
		n := len(list)
		if n >= max {
			for _, old := range list {
				if expired(old.Created, old.LastSeen) {
					if err := repo.Delete(ctx, old.Key); err != nil {
						return err
					}
					n--
				}
			}
		}
		if n >= max {
			return errTooManySessions
		}
		return repo.Put(ctx, r)
	})
}

func (b dbBackend) update(ctx context.Context, key string, fn func(*consolesession.Session) bool) error {
	return b.db.Update(ctx, func(tx SessionTx) error {
		repo := tx.ConsoleSessions()
		r, err := repo.Get(ctx, key)
		if err != nil || r == nil || !fn(r) {
			return err
		}
		return repo.Put(ctx, r)
	})
}

func (b dbBackend) removeIf(ctx context.Context, key string, cond func(*consolesession.Session) bool) (bool, error) {
	removed := false
	err := b.db.Update(ctx, func(tx SessionTx) error {
		removed = false // the unit of work may run again
		repo := tx.ConsoleSessions()
		r, err := repo.Get(ctx, key)
		if err != nil || r == nil || (cond != nil && !cond(r)) {
			return err
		}
		removed = true
		return repo.Delete(ctx, key)
	})
	return removed && err == nil, err
}

func (b dbBackend) list(ctx context.Context) (out []consolesession.Session, err error) {
	err = b.db.View(ctx, func(tx SessionTx) error {
		out, err = tx.ConsoleSessions().List(ctx)
		return err
	})
	return out, err
}

// memBackend keeps the sessions in memory: one server, and a restart signs everyone out (a
// console without a SessionDB: tests, tools).
type memBackend struct {
	mu   sync.Mutex
	byID map[string]consolesession.Session
}

func newMemBackend() *memBackend {
	return &memBackend{byID: map[string]consolesession.Session{}}
}

func (b *memBackend) get(_ context.Context, key string) (*consolesession.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.byID[key]
	if !ok {
		return nil, nil
	}
	return &r, nil
}

func (b *memBackend) add(_ context.Context, r *consolesession.Session, max int, expired func(created, lastSeen time.Time) bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.byID) >= max {
		for k, old := range b.byID {
			if expired(old.Created, old.LastSeen) {
				delete(b.byID, k)
			}
		}
		if len(b.byID) >= max {
			return errTooManySessions
		}
	}
	b.byID[r.Key] = *r
	return nil
}

func (b *memBackend) update(_ context.Context, key string, fn func(*consolesession.Session) bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, ok := b.byID[key]; ok && fn(&r) {
		b.byID[key] = r
	}
	return nil
}

func (b *memBackend) removeIf(_ context.Context, key string, cond func(*consolesession.Session) bool) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.byID[key]
	if !ok || (cond != nil && !cond(&r)) {
		return false, nil
	}
	delete(b.byID, key)
	return true, nil
}

func (b *memBackend) list(context.Context) ([]consolesession.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Values(b.byID)), nil
}
