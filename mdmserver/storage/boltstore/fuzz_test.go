package boltstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/micromdm/nanolib/storage/kv"
	"go.etcd.io/bbolt"
)

// FuzzTxnModel runs random operation sequences against a Bucket and a Txn
// on it and compares every answer with a plain map model: read-your-own-
// writes, staged deletes, key listings, commit and rollback.
func FuzzTxnModel(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 1, 7, 2, 1, 6, 1, 2, 1},                            // set, get, commit, get
		{7, 2, 9, 1, 2, 3, 2, 5, 0, 3, 2},                      // parent set, txn delete, has, rollback, has
		{0, 4, 1, 0, 8, 2, 4, 1, 6, 0, 4, 5},                   // keys with prefixes, commit
		{2, 4, 7, 4, 5, 6, 0, 2, 4},                            // read ka, parent sets ka, commit: conflict
		{7, 4, 5, 2, 4, 7, 4, 6, 2, 4, 7, 4, 5, 0, 0, 1, 6, 0}, // unstable read, value restored: conflict
		{0, 0xff, 6, 0},                                        // empty key
	} {
		f.Add(seed)
	}
	s := openTestStore(f)
	s.DB().NoSync = true // fuzzing checks logic, not fsync
	var n atomic.Int64
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 512 {
			return
		}
		name := fmt.Sprintf("fuzz-%d", n.Add(1))
		b, err := s.Bucket(name)
		if err != nil {
			t.Fatal(err)
		}
		defer s.DB().Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte(name)) })
		txn, err := b.Begin()
		if err != nil {
			t.Fatal(err)
		}
		m := newTxnModel()
		next := func() byte {
			if len(prog) == 0 {
				return 0
			}
			c := prog[0]
			prog = prog[1:]
			return c
		}
		for len(prog) > 0 {
			op, c := next()%8, next()
			if c == 0xff {
				if err := txn.Set(ctx, "", nil); !errors.Is(err, ErrEmptyKey) {
					t.Fatalf("Set empty key: %v", err)
				}
				continue
			}
			// few distinct keys, sharing prefixes, so operations collide
			k := strings.Repeat("k", int(c%3)) + string(rune('a'+c%4))
			switch op {
			case 0:
				v := fmt.Sprint(next())
				if err := txn.Set(ctx, k, []byte(v)); err != nil {
					t.Fatal(err)
				}
				m.staged[k] = &v
			case 1:
				if err := txn.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
				m.staged[k] = nil
			case 2:
				want, ok := m.read(k)
				v, err := txn.Get(ctx, k)
				if ok && (err != nil || string(v) != want) {
					t.Fatalf("Get(%q) = %q, %v; want %q", k, v, err, want)
				} else if !ok && !errors.Is(err, kv.ErrKeyNotFound) {
					t.Fatalf("Get(%q) = %q, %v; want not found", k, v, err)
				}
			case 3:
				_, want := m.read(k)
				if has, err := txn.Has(ctx, k); err != nil || has != want {
					t.Fatalf("Has(%q) = %v, %v; want %v", k, has, err, want)
				}
			case 4:
				prefix := k[:len(k)-1]
				var want []string
				for kk := range m.view() {
					if strings.HasPrefix(kk, prefix) {
						want = append(want, kk)
					}
				}
				slices.Sort(want)
				if have := kv.AllKeysPrefix(ctx, txn, prefix); !slices.Equal(have, want) {
					t.Fatalf("txn KeysPrefix(%q) = %v, want %v", prefix, have, want)
				}
				if have, want := kv.AllKeys(ctx, b), slices.Sorted(maps.Keys(m.committed)); !slices.Equal(have, want) {
					t.Fatalf("parent Keys = %v, want %v", have, want)
				}
			case 5:
				if err := txn.Rollback(ctx); err != nil {
					t.Fatal(err)
				}
				m.reset()
			case 6:
				err := txn.Commit(ctx)
				if m.conflicts() {
					if !errors.Is(err, ErrTxnConflict) {
						t.Fatalf("Commit after a conflicting parent write = %v", err)
					}
				} else if err != nil {
					t.Fatal(err)
				} else {
					m.committed = m.view()
				}
				m.reset()
			case 7: // parent write outside the transaction
				if c%2 == 0 {
					v := fmt.Sprint(next())
					if err := b.Set(ctx, k, []byte(v)); err != nil {
						t.Fatal(err)
					}
					m.committed[k] = v
				} else {
					if err := b.Delete(ctx, k); err != nil {
						t.Fatal(err)
					}
					delete(m.committed, k)
				}
			}
		}
	})
}

// txnModel is the expected behaviour of a Txn on a Bucket.
type txnModel struct {
	committed map[string]string
	staged    map[string]*string // nil: staged delete
	firstRead map[string]*string // what the txn first read from the database; nil: absent
	unstable  bool               // a later database read disagreed with the first
}

func newTxnModel() *txnModel {
	m := &txnModel{committed: map[string]string{}}
	m.reset()
	return m
}

func (m *txnModel) reset() {
	m.staged, m.firstRead, m.unstable = map[string]*string{}, map[string]*string{}, false
}

// view is the transaction's view: committed data overlaid with its stage.
func (m *txnModel) view() map[string]string {
	v := maps.Clone(m.committed)
	for k, sv := range m.staged {
		if sv == nil {
			delete(v, k)
		} else {
			v[k] = *sv
		}
	}
	return v
}

// read returns what the transaction sees at k, recording database reads.
func (m *txnModel) read(k string) (string, bool) {
	if sv, ok := m.staged[k]; ok {
		if sv == nil {
			return "", false
		}
		return *sv, true
	}
	v, ok := m.committed[k]
	var now *string
	if ok {
		now = &v
	}
	if first, seen := m.firstRead[k]; !seen {
		m.firstRead[k] = now
	} else if !sameValue(first, now) {
		m.unstable = true
	}
	return v, ok
}

// conflicts reports whether a commit now must fail.
func (m *txnModel) conflicts() bool {
	if m.unstable {
		return true
	}
	for k, first := range m.firstRead {
		v, ok := m.committed[k]
		var now *string
		if ok {
			now = &v
		}
		if !sameValue(first, now) {
			return true
		}
	}
	return false
}

func sameValue(a, b *string) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}
