package boltstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
)

var (
	_ storage.Store  = (*Store)(nil)
	_ kvstore.Tx     = (*kvTx)(nil)
	_ kvstore.Bucket = kvBucket{}
	_ kvstore.Cursor = (*bbolt.Cursor)(nil)
)

// View runs fn in a bbolt read transaction.
func (s *Store) View(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(btx *bbolt.Tx) error { return fn(s.newTx(btx)) })
}

// Update runs fn in a bbolt write transaction, which commits (and fsyncs) before Update returns.
// Once started it runs to the end even if ctx ends: a half-done unit of work is worse than a
// finished one, and bbolt's single writer is held only briefly.
func (s *Store) Update(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(btx *bbolt.Tx) error { return fn(s.newTx(btx)) })
}

// Batch runs fn through bbolt's Batch: concurrent callers share one write transaction and one
// fsync. bbolt re-runs fn alone when another function in the batch fails, so fn must be
// idempotent.
func (s *Store) Batch(ctx context.Context, fn func(storage.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(btx *bbolt.Tx) error { return fn(s.newTx(btx)) })
}

// newTx returns the repositories (package kvstore, written once for every backend) on btx.
func (s *Store) newTx(btx *bbolt.Tx) storage.Tx { return kvstore.NewTx(&kvTx{tx: btx, st: s}) }

// kvTx is a kvstore.Tx on one bbolt transaction: kvstore's buckets are bbolt's top-level buckets,
// created at Open.
type kvTx struct {
	tx *bbolt.Tx
	// st is the store the transaction runs on, for the state counts it keeps beside the file
	// (statecount.go).
	st *Store
}

// Bucket returns a top-level bucket the store created at open, or an error naming it: a missing
// bucket means a damaged file, not an empty one.
func (t *kvTx) Bucket(name []byte) (kvstore.Bucket, error) {
	b, err := bucket(t.tx, name)
	if err != nil {
		return nil, err
	}
	if isAppendOnly(name) {
		b.FillPercent = 1.0 // keys only grow: full pages split less and the file stays about half the size
	}
	return kvBucket{b}, nil
}

// Writable reports whether the bbolt transaction may write.
func (t *kvTx) Writable() bool { return t.tx.Writable() }

// MoveState moves one record of a counted bucket between states in the store's in-memory counts
// when the bbolt transaction commits. Other buckets are not counted: it does nothing for them.
func (t *kvTx) MoveState(bucket []byte, from, to string) {
	if c := t.st.tallies[string(bucket)]; c != nil {
		c.move(t.tx, from, to)
	}
}

// StateCounts returns the store's in-memory counts of a counted bucket.
func (t *kvTx) StateCounts(bucket []byte) (map[string]int64, error) {
	c := t.st.tallies[string(bucket)]
	if c == nil {
		return nil, fmt.Errorf("boltstore: bucket %q has no state counts", bucket)
	}
	return c.snapshot(), nil
}

// isAppendOnly reports whether name is one of kvstore.AppendOnlyBuckets.
func isAppendOnly(name []byte) bool {
	for _, a := range kvstore.AppendOnlyBuckets {
		if string(a) == string(name) {
			return true
		}
	}
	return false
}

// kvBucket is a kvstore.Bucket on a bbolt bucket. bbolt's cursor is already a kvstore.Cursor.
type kvBucket struct{ b *bbolt.Bucket }

// Get returns the value at key, or nil.
func (b kvBucket) Get(key []byte) []byte { return b.b.Get(key) }

// Put sets key to value; in a read transaction it fails with storage.ErrReadOnly.
func (b kvBucket) Put(key, value []byte) error { return mapWrite(b.b.Put(key, value)) }

// Delete removes key; in a read transaction it fails with storage.ErrReadOnly.
func (b kvBucket) Delete(key []byte) error { return mapWrite(b.b.Delete(key)) }

// ForEach calls fn for every key in order.
func (b kvBucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }

// Cursor returns a bbolt cursor over the bucket.
func (b kvBucket) Cursor() kvstore.Cursor { return b.b.Cursor() }

// NextSequence returns the bucket's next sequence number.
func (b kvBucket) NextSequence() (uint64, error) {
	n, err := b.b.NextSequence()
	return n, mapWrite(err)
}

// KeyN returns the number of keys in the bucket, from bbolt's page statistics.
func (b kvBucket) KeyN() (int, error) { return b.b.Stats().KeyN, nil }

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
