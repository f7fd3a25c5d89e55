package console

import (
	"context"
	"log/slog"
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

// SessionStore keeps the sessions durably for one server: written through from memory and
// read back at start (WithSessionStore). Servers sharing a database use a SessionDB instead.
type SessionStore interface {
	Put(ctx context.Context, s *consolesession.Session) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context) ([]consolesession.Session, error)
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

// memBackend keeps the sessions in memory: one server, and a restart signs everyone out. With
// a SessionStore (st) it writes every change through and reads the store at start, so the
// table survives a restart but is this server's alone.
type memBackend struct {
	mu   sync.Mutex
	byID map[string]consolesession.Session
	st   SessionStore // nil: memory only
	log  *slog.Logger
}

func newMemBackend() *memBackend {
	return &memBackend{byID: map[string]consolesession.Session{}, log: slog.Default()}
}

// load reads the stored sessions into the table, deleting those expired.
func (b *memBackend) load(ctx context.Context, expired func(created, lastSeen time.Time) bool) error {
	list, err := b.st.List(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range list {
		if expired(r.Created, r.LastSeen) {
			if err := b.st.Delete(ctx, r.Key); err != nil {
				return err
			}
			continue
		}
		b.byID[r.Key] = r
	}
	return nil
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

func (b *memBackend) add(ctx context.Context, r *consolesession.Session, max int, expired func(created, lastSeen time.Time) bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.byID) >= max {
		for k, old := range b.byID {
			if expired(old.Created, old.LastSeen) {
				delete(b.byID, k)
				b.forget(ctx, k)
			}
		}
		if len(b.byID) >= max {
			return errTooManySessions
		}
	}
	if b.st != nil {
		if err := b.st.Put(ctx, r); err != nil {
			return err
		}
	}
	b.byID[r.Key] = *r
	return nil
}

func (b *memBackend) update(ctx context.Context, key string, fn func(*consolesession.Session) bool) error {
	b.mu.Lock()
	r, ok := b.byID[key]
	if !ok || !fn(&r) {
		b.mu.Unlock()
		return nil
	}
	b.byID[key] = r
	b.mu.Unlock()
	if b.st != nil {
		return b.st.Put(ctx, &r)
	}
	return nil
}

func (b *memBackend) removeIf(ctx context.Context, key string, cond func(*consolesession.Session) bool) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.byID[key]
	if !ok || (cond != nil && !cond(&r)) {
		return false, nil
	}
	delete(b.byID, key)
	b.forget(ctx, key)
	return true, nil
}

// forget deletes key from the store, logging a failure: the session is already out of the
// table, and a copy left in the store still expires by its own times after a restart.
func (b *memBackend) forget(ctx context.Context, key string) {
	if b.st == nil {
		return
	}
	if err := b.st.Delete(context.WithoutCancel(ctx), key); err != nil {
		b.log.Error("console: deleting an ended session from the store failed; it expires by itself", "err", err)
	}
}

func (b *memBackend) list(context.Context) ([]consolesession.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Values(b.byID)), nil
}
