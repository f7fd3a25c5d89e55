package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/micromdm/nanolib/storage/kv"
	"go.etcd.io/bbolt"
)

const (
	// MaxKeySize is the largest key, in bytes, a [Bucket] accepts.
	// nanomdm keys are enrollment and command IDs joined with short
	// suffixes; 4 KiB leaves room for hostile-but-valid IDs while staying
	// far below bbolt's own 32 KiB limit.
	MaxKeySize = 4 << 10

	// MaxValueSize is the largest value, in bytes, a [Bucket] accepts.
	MaxValueSize = 32 << 20

	// maxBucketNameSize bounds top-level bucket names.
	maxBucketNameSize = 255
)

var (
	// ErrEmptyKey is returned for a zero-length key.
	ErrEmptyKey = errors.New("store: empty key")

	// ErrKeyTooLarge is returned for a key longer than [MaxKeySize].
	ErrKeyTooLarge = errors.New("store: key too large")

	// ErrValueTooLarge is returned for a value longer than [MaxValueSize].
	ErrValueTooLarge = errors.New("store: value too large")

	// ErrTxnConflict is returned by [Txn.Commit] when a key the transaction
	// read was changed by someone else before the commit. Nothing was
	// written; run the whole transaction again.
	ErrTxnConflict = errors.New("store: transaction conflict: a key it read changed before commit; nothing was written, retry the transaction")
)

// Bucket is a nanolib key-value bucket over one top-level bbolt bucket.
// Every operation auto-commits in its own short bbolt transaction; use
// [Bucket.BeginBucketTxn] (or the CRUD/keys-prefix variants) for atomic
// multi-key writes. Safe for concurrent use.
type Bucket struct {
	store *Store
	name  []byte
}

// Interfaces nanomdm's kv storage needs, checked at compile time.
var (
	_ kv.TxnBucketWithCRUD  = (*Bucket)(nil)
	_ kv.BucketTxnCompleter = (*Txn)(nil)
)

// Bucket opens (creating it if missing) the top-level bbolt bucket name as a
// nanolib key-value bucket.
func (s *Store) Bucket(name string) (*Bucket, error) {
	if name == "" || len(name) > maxBucketNameSize {
		return nil, fmt.Errorf("store: bucket name must be 1 to %d bytes, got %d", maxBucketNameSize, len(name))
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("store: opening bucket %q: %w", name, ErrClosed)
	}
	if err := s.createBuckets(name); err != nil {
		return nil, err
	}
	return &Bucket{store: s, name: []byte(name)}, nil
}

// Name returns the bbolt bucket name.
func (b *Bucket) Name() string {
	return string(b.name)
}

// checkKey validates a key before it reaches bbolt.
func checkKey(key string) error {
	if key == "" {
		return ErrEmptyKey
	} else if len(key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrKeyTooLarge, len(key), MaxKeySize)
	}
	return nil
}

// checkValue validates a value before it reaches bbolt.
func checkValue(value []byte) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrValueTooLarge, len(value), MaxValueSize)
	}
	return nil
}

// bucket returns b's bbolt bucket within tx.
func (b *Bucket) bucket(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	bk := tx.Bucket(b.name)
	if bk == nil {
		return nil, fmt.Errorf("bbolt bucket %q missing (was it deleted through DB()?)", b.name)
	}
	return bk, nil
}

// lookup returns the value at key in bk and whether it exists.
// The value is only valid inside bk's transaction.
// Plain Get cannot tell an empty value from a missing key, hence the cursor.
func lookup(bk *bbolt.Bucket, key []byte) ([]byte, bool) {
	k, v := bk.Cursor().Seek(key)
	if !bytes.Equal(k, key) {
		return nil, false
	}
	if v == nil && bk.Bucket(key) != nil {
		// a nested bucket is not a value
		return nil, false
	}
	return v, true
}

// view reads key in its own read transaction and hands the (bbolt-owned)
// value to f, which must copy what it keeps.
func (b *Bucket) view(key string, f func(v []byte, found bool)) error {
	return b.store.db.View(func(tx *bbolt.Tx) error {
		bk, err := b.bucket(tx)
		if err != nil {
			return err
		}
		v, found := lookup(bk, []byte(key))
		f(v, found)
		return nil
	})
}

// opErr wraps err with the operation, bucket and key that failed.
func (b *Bucket) opErr(op, key string, err error) error {
	return fmt.Errorf("store: %s %q in bucket %s: %w", op, key, b.name, err)
}

// Get returns a copy of the value at key, or an error wrapping
// [kv.ErrKeyNotFound] if key does not exist.
func (b *Bucket) Get(_ context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, b.opErr("get", key, err)
	}
	var value []byte
	var found bool
	err := b.view(key, func(v []byte, ok bool) {
		found = ok
		if ok {
			value = append([]byte{}, v...)
		}
	})
	if err != nil {
		return nil, b.opErr("get", key, err)
	} else if !found {
		return nil, b.opErr("get", key, kv.ErrKeyNotFound)
	}
	return value, nil
}

// Has reports whether key exists.
func (b *Bucket) Has(_ context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, b.opErr("has", key, err)
	}
	var found bool
	if err := b.view(key, func(_ []byte, ok bool) { found = ok }); err != nil {
		return false, b.opErr("has", key, err)
	}
	return found, nil
}

// Set stores value at key and returns after bbolt committed it. Concurrent Sets and Deletes
// (every device's check-in records its last-seen time) share one commit through db.Batch: a put
// or delete is idempotent, so a batch retried after one member failed is harmless.
func (b *Bucket) Set(_ context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return b.opErr("set", key, err)
	}
	if err := checkValue(value); err != nil {
		return b.opErr("set", key, err)
	}
	err := b.store.db.Batch(func(tx *bbolt.Tx) error {
		bk, err := b.bucket(tx)
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), value)
	})
	if err != nil {
		return b.opErr("set", key, err)
	}
	return nil
}

// Delete removes key and returns after bbolt committed it.
// Deleting a missing key is not an error.
func (b *Bucket) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return b.opErr("delete", key, err)
	}
	err := b.store.db.Batch(func(tx *bbolt.Tx) error {
		bk, err := b.bucket(tx)
		if err != nil {
			return err
		}
		return bk.Delete([]byte(key))
	})
	if err != nil {
		return b.opErr("delete", key, err)
	}
	return nil
}

// Keys streams all keys in ascending byte order. See [Bucket.KeysPrefix].
func (b *Bucket) Keys(ctx context.Context, cancel <-chan struct{}) <-chan string {
	return b.KeysPrefix(ctx, "", cancel)
}

// KeysPrefix streams the keys starting with prefix in ascending byte order.
// The keys are a snapshot taken (in a bbolt read transaction that is
// already closed) before KeysPrefix returns. The channel is closed after
// the last key, when ctx is done, or when cancel is closed. A failure to
// read is logged and yields a closed, empty channel: the interface has no
// error return.
func (b *Bucket) KeysPrefix(ctx context.Context, prefix string, cancel <-chan struct{}) <-chan string {
	keys, err := b.collectKeys(prefix)
	if err != nil {
		b.store.logger.Error("listing keys", "bucket", string(b.name), "prefix", prefix, "err", err)
	}
	return streamKeys(ctx, cancel, keys)
}

// collectKeys returns the keys with prefix, read in one View.
func (b *Bucket) collectKeys(prefix string) ([]string, error) {
	var keys []string
	err := b.store.db.View(func(tx *bbolt.Tx) error {
		bk, err := b.bucket(tx)
		if err != nil {
			return err
		}
		p := []byte(prefix)
		c := bk.Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if v == nil && bk.Bucket(k) != nil {
				continue
			}
			keys = append(keys, string(k)) // string() copies out of bbolt memory
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: listing keys with prefix %q in bucket %s: %w", prefix, b.name, err)
	}
	return keys, nil
}

// streamKeys sends keys on the returned channel from a goroutine that holds
// no bbolt transaction, stopping early when ctx is done or cancel closes.
func streamKeys(ctx context.Context, cancel <-chan struct{}, keys []string) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		for _, k := range keys {
			select {
			case <-ctx.Done():
				return
			case <-cancel:
				return
			case ch <- k:
			}
		}
	}()
	return ch
}

// Commit does nothing and returns nil: operations on a Bucket outside a
// transaction are already committed when they return.
func (b *Bucket) Commit(context.Context) error { return nil }

// Rollback does nothing and returns nil: operations on a Bucket outside a
// transaction are already committed and cannot be undone.
func (b *Bucket) Rollback(context.Context) error { return nil }

// Begin starts a [Txn] on b. It holds no bbolt transaction.
func (b *Bucket) Begin() (*Txn, error) {
	if b.store.closed.Load() {
		return nil, fmt.Errorf("store: begin transaction on bucket %s: %w", b.name, ErrClosed)
	}
	return newTxn(b), nil
}

// BeginCRUDBucketTxn starts a [Txn] on b.
func (b *Bucket) BeginCRUDBucketTxn(context.Context) (kv.CRUDBucketTxnCompleter, error) {
	return beginAs[kv.CRUDBucketTxnCompleter](b)
}

// BeginKeysPrefixTraversingBucketTxn starts a [Txn] on b.
func (b *Bucket) BeginKeysPrefixTraversingBucketTxn(context.Context) (kv.KeysPrefixTraversingBucketTxnCompleter, error) {
	return beginAs[kv.KeysPrefixTraversingBucketTxnCompleter](b)
}

// BeginBucketTxn starts a [Txn] on b.
func (b *Bucket) BeginBucketTxn(context.Context) (kv.BucketTxnCompleter, error) {
	return beginAs[kv.BucketTxnCompleter](b)
}

// beginAs starts a Txn as the interface T nanolib asks for. On error it
// returns T's zero value: returning a nil *Txn inside T would make a
// non-nil interface that looks like a usable transaction.
func beginAs[T kv.TxnCompleter](b *Bucket) (T, error) {
	var zero T
	t, err := b.Begin()
	if err != nil {
		return zero, err
	}
	return any(t).(T), nil
}
