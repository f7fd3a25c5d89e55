package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/consolesession"
	"github.com/halemdm/hale/mdmserver/storage"
)

// bucketConsoleSessions holds the web console's sessions: cookie hash -> session JSON.
var (
	bucketConsoleSessions = []byte("console_sessions")
	consoleSessionBuckets = [][]byte{bucketConsoleSessions}
)

// ConsoleSessions returns the web console's sessions in this transaction.
func (t *tx) ConsoleSessions() consolesession.Repository { return consoleSessionRepo{t.tx} }

// consoleSessionRepo is consolesession.Repository on one bbolt transaction.
type consoleSessionRepo struct{ tx *bbolt.Tx }

var _ consolesession.Repository = consoleSessionRepo{}

// Put stores s under its key.
func (r consoleSessionRepo) Put(ctx context.Context, s *consolesession.Session) error {
	if !r.tx.Writable() {
		return storage.ErrReadOnly
	}
	b, err := bucket(r.tx, bucketConsoleSessions)
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
	if !r.tx.Writable() {
		return storage.ErrReadOnly
	}
	b, err := bucket(r.tx, bucketConsoleSessions)
	if err != nil {
		return err
	}
	return b.Delete([]byte(key))
}

// List returns every stored session.
func (r consoleSessionRepo) List(ctx context.Context) ([]consolesession.Session, error) {
	b, err := bucket(r.tx, bucketConsoleSessions)
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
