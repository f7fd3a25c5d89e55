package boltstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/halemdm/hale/mdmserver/storage"
)

var _ storage.Store = (*Store)(nil)

// tx is a storage.Tx on one bbolt transaction. Each repository accessor (in the file of its
// domain) wraps the same *bbolt.Tx, so everything written through them commits together.
type tx struct {
	tx *bbolt.Tx
	// st is the store the transaction runs on, for what a repository keeps beside the file (the
	// command state counts, statecount.go).
	st *Store
}

// View runs fn in a bbolt read transaction.
func (s *Store) View(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(btx *bbolt.Tx) error { return fn(&tx{tx: btx, st: s}) })
}

// Update runs fn in a bbolt write transaction, which commits (and fsyncs) before Update returns.
// Once started it runs to the end even if ctx ends: a half-done unit of work is worse than a
// finished one, and bbolt's single writer is held only briefly.
func (s *Store) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(btx *bbolt.Tx) error { return fn(&tx{tx: btx, st: s}) })
}

// Batch runs fn through bbolt's Batch: concurrent callers share one write transaction and one
// fsync. bbolt re-runs fn alone when another function in the batch fails, so fn must be
// idempotent.
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(btx *bbolt.Tx) error { return fn(&tx{tx: btx, st: s}) })
}

// bucket returns a top-level bucket the store created at open, or an error naming it: a missing
// bucket means a damaged file, not an empty one.
func bucket(btx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	b := btx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("boltstore: bucket %q is missing", name)
	}
	return b, nil
}

// mapWrite turns bbolt's refusal to write in a read transaction into storage.ErrReadOnly, so
// callers of any backend see the same error; other errors pass unchanged.
func mapWrite(err error) error {
	if errors.Is(err, berrors.ErrTxNotWritable) {
		return fmt.Errorf("%w: %w", storage.ErrReadOnly, err)
	}
	return err
}
