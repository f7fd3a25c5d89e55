package kvstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/halemdm/hale/mdmserver/consolesession"
	"github.com/halemdm/hale/mdmserver/storage"
)

// BucketConsoleSessions holds the web console's sessions: cookie hash -> session JSON.
var (
	BucketConsoleSessions = []byte("console_sessions")
	consoleSessionBuckets = [][]byte{BucketConsoleSessions}
)

// ConsoleSessions returns the web console's sessions in this transaction.
func (t *tx) ConsoleSessions() consolesession.Repository { return consoleSessionRepo{t} }

// consoleSessionRepo is consolesession.Repository on one key-value transaction.
type consoleSessionRepo struct{ t *tx }

var _ consolesession.Repository = consoleSessionRepo{}

// Get returns the session with key, or nil.
func (r consoleSessionRepo) Get(ctx context.Context, key string) (*consolesession.Session, error) {
	b, err := bucket(r.t.tx, BucketConsoleSessions)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	s := new(consolesession.Session)
	if err := json.Unmarshal(v, s); err != nil {
		return nil, fmt.Errorf("console session %.8s: %w", key, err)
	}
	return s, nil
}

// Put stores s under its key.
func (r consoleSessionRepo) Put(ctx context.Context, s *consolesession.Session) error {
	if !r.t.tx.Writable() {
		return storage.ErrReadOnly
	}
	b, err := bucket(r.t.tx, BucketConsoleSessions)
	if err != nil {
		return err
	}
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return b.Put([]byte(s.Key), v)
}

// Delete removes the session with key.
func (r consoleSessionRepo) Delete(ctx context.Context, key string) error {
	if !r.t.tx.Writable() {
		return storage.ErrReadOnly
	}
	b, err := bucket(r.t.tx, BucketConsoleSessions)
	if err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

// List returns every stored session.
func (r consoleSessionRepo) List(ctx context.Context) ([]consolesession.Session, error) {
	b, err := bucket(r.t.tx, BucketConsoleSessions)
	if err != nil {
		return nil, err
	}
	var out []consolesession.Session
	err = b.ForEach(func(k, v []byte) error {
		var s consolesession.Session
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("console session %x: %w", k[:min(len(k), 8)], err)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}
