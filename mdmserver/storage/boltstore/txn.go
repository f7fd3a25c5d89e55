package boltstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/micromdm/nanolib/storage/kv"
	"go.etcd.io/bbolt"
)

// stagedOp is a buffered write: a value to set, or a delete.
type stagedOp struct {
	value []byte
	del   bool
}

// readRecord is what a Txn saw in the database for one key.
type readRecord struct {
	exists bool
	sum    [sha256.Size]byte
}

// newReadRecord records v (and whether it existed).
func newReadRecord(v []byte, exists bool) readRecord {
	r := readRecord{exists: exists}
	if exists {
		r.sum = sha256.Sum256(v)
	}
	return r
}

// Txn is a kv transaction on a [Bucket]. It holds no bbolt transaction:
// writes are buffered and applied atomically in one bbolt write
// transaction by Commit, after checking that nothing the Txn read has
// changed since (see the package documentation).
//
// After Commit or Rollback the Txn is empty and can be used again; reads
// then see the bucket's committed state. Safe for concurrent use, though a
// transaction normally belongs to one goroutine.
type Txn struct {
	b *Bucket

	mu    sync.Mutex
	ops   map[string]stagedOp
	reads map[string]readRecord
	// unstable is set when two reads of the same key disagreed: the Txn
	// already acted on a value that changed under it.
	unstable bool
}

func newTxn(b *Bucket) *Txn {
	t := &Txn{b: b}
	t.reset()
	return t
}

// reset empties the transaction. t.mu must be held (or t unshared).
func (t *Txn) reset() {
	t.ops = make(map[string]stagedOp)
	t.reads = make(map[string]readRecord)
	t.unstable = false
}

// readDB reads key from the database, records what was seen and hands the
// (bbolt-owned) value to f. t.mu must be held.
func (t *Txn) readDB(key string, f func(v []byte, found bool)) error {
	return t.b.view(key, func(v []byte, found bool) {
		rec := newReadRecord(v, found)
		if prev, ok := t.reads[key]; ok && prev != rec {
			t.unstable = true
		} else if !ok {
			t.reads[key] = rec
		}
		f(v, found)
	})
}

// Get returns a copy of the value at key as this transaction sees it: its
// own staged write or delete first, then the database.
func (t *Txn) Get(_ context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, t.b.opErr("txn get", key, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if op, ok := t.ops[key]; ok {
		if op.del {
			return nil, t.b.opErr("txn get", key, kv.ErrKeyNotFound)
		}
		return append([]byte{}, op.value...), nil
	}
	var value []byte
	var found bool
	err := t.readDB(key, func(v []byte, ok bool) {
		found = ok
		if ok {
			value = append([]byte{}, v...)
		}
	})
	if err != nil {
		return nil, t.b.opErr("txn get", key, err)
	} else if !found {
		return nil, t.b.opErr("txn get", key, kv.ErrKeyNotFound)
	}
	return value, nil
}

// Has reports whether key exists as this transaction sees it.
func (t *Txn) Has(_ context.Context, key string) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, t.b.opErr("txn has", key, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if op, ok := t.ops[key]; ok {
		return !op.del, nil
	}
	var found bool
	if err := t.readDB(key, func(_ []byte, ok bool) { found = ok }); err != nil {
		return false, t.b.opErr("txn has", key, err)
	}
	return found, nil
}

// Set buffers setting key to (a copy of) value until Commit.
func (t *Txn) Set(_ context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return t.b.opErr("txn set", key, err)
	}
	if err := checkValue(value); err != nil {
		return t.b.opErr("txn set", key, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops[key] = stagedOp{value: append([]byte{}, value...)}
	return nil
}

// Delete buffers deleting key until Commit.
func (t *Txn) Delete(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return t.b.opErr("txn delete", key, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops[key] = stagedOp{del: true}
	return nil
}

// Keys streams all keys as this transaction sees them. See [Txn.KeysPrefix].
func (t *Txn) Keys(ctx context.Context, cancel <-chan struct{}) <-chan string {
	return t.KeysPrefix(ctx, "", cancel)
}

// KeysPrefix streams, in ascending byte order, the keys starting with
// prefix as this transaction sees them: the database's keys plus its staged
// sets, minus its staged deletes. The snapshot is taken before KeysPrefix
// returns; it is not re-checked at Commit.
func (t *Txn) KeysPrefix(ctx context.Context, prefix string, cancel <-chan struct{}) <-chan string {
	t.mu.Lock()
	dbKeys, err := t.b.collectKeys(prefix)
	if err != nil {
		t.b.store.logger.Error("listing keys in transaction", "bucket", string(t.b.name), "prefix", prefix, "err", err)
	}
	keys := make([]string, 0, len(dbKeys)+len(t.ops))
	for _, k := range dbKeys {
		if _, staged := t.ops[k]; !staged {
			keys = append(keys, k)
		}
	}
	for k, op := range t.ops {
		if !op.del && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	t.mu.Unlock()
	slices.Sort(keys)
	return streamKeys(ctx, cancel, keys)
}

// Commit applies all buffered writes in one bbolt write transaction and
// returns after it committed. If a key this transaction read changed in the
// meantime, Commit writes nothing and returns [ErrTxnConflict]. Either way
// the transaction is empty afterwards.
func (t *Txn) Commit(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ops, reads, unstable := t.ops, t.reads, t.unstable
	t.reset()
	if unstable {
		return fmt.Errorf("store: commit to bucket %s: %w", t.b.name, ErrTxnConflict)
	}
	if len(ops) == 0 {
		// Read-only: nothing to make durable, but the reads must still
		// have been current, and a View does not wait for the writer.
		err := t.b.store.db.View(func(tx *bbolt.Tx) error {
			bk, err := t.b.bucket(tx)
			if err != nil {
				return err
			}
			return validateReads(bk, reads)
		})
		if err != nil {
			return fmt.Errorf("store: commit read-only transaction on bucket %s: %w", t.b.name, err)
		}
		return nil
	}
	// Sorted keys make bbolt's page updates sequential (and errors
	// deterministic).
	keys := make([]string, 0, len(ops))
	for k := range ops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	err := t.b.store.db.Update(func(tx *bbolt.Tx) error {
		bk, err := t.b.bucket(tx)
		if err != nil {
			return err
		}
		if err := validateReads(bk, reads); err != nil {
			return err
		}
		for _, k := range keys {
			op := ops[k]
			if op.del {
				err = bk.Delete([]byte(k))
			} else {
				err = bk.Put([]byte(k), op.value)
			}
			if err != nil {
				return fmt.Errorf("applying %q: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: commit %d writes to bucket %s: %w", len(ops), t.b.name, err)
	}
	return nil
}

// Rollback discards all buffered writes. It never fails.
func (t *Txn) Rollback(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reset()
	return nil
}

// validateReads returns ErrTxnConflict if any key in reads no longer holds
// what the transaction saw.
func validateReads(bk *bbolt.Bucket, reads map[string]readRecord) error {
	for key, seen := range reads {
		v, found := lookup(bk, []byte(key))
		if newReadRecord(v, found) != seen {
			return fmt.Errorf("%w (key %q)", ErrTxnConflict, key)
		}
	}
	return nil
}
