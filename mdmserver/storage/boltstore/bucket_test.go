package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/nanolib/storage/kv"
	kvtest "github.com/micromdm/nanolib/storage/kv/test"
)

func TestConformance(t *testing.T) {
	ctx := context.Background()
	t.Run("BucketSimple", func(t *testing.T) { kvtest.TestBucketSimple(t, ctx, openTestBucket(t)) })
	t.Run("KeysTraversing", func(t *testing.T) { kvtest.TestKeysTraversing(t, ctx, openTestBucket(t)) })
	t.Run("TxnSimple", func(t *testing.T) { kvtest.TestTxnSimple(t, ctx, openTestBucket(t)) })
	t.Run("KVTxnKeys", func(t *testing.T) { kvtest.TestKVTxnKeys(t, ctx, openTestBucket(t)) })

	// The same contracts must hold inside a transaction, before and after
	// its commit.
	t.Run("InTxn", func(t *testing.T) {
		b := openTestBucket(t)
		txn, err := b.Begin()
		if err != nil {
			t.Fatal(err)
		}
		kvtest.TestBucketSimple(t, ctx, txn)
		kvtest.TestKeysTraversing(t, ctx, txn)
		if have := kv.AllKeys(ctx, b); len(have) != 0 {
			t.Errorf("uncommitted keys visible in parent: %v", have)
		}
		if err := txn.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if have, want := kv.AllKeys(ctx, b), []string{"foo", "hello", "help"}; !slices.Equal(have, want) {
			t.Errorf("after commit: keys %v, want %v", have, want)
		}
	})
}

func TestEmptyValueRoundTrip(t *testing.T) {
	b := openTestBucket(t)
	ctx := context.Background()
	if err := b.Set(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if has, err := b.Has(ctx, "empty"); err != nil || !has {
		t.Fatalf("Has(empty value) = %v, %v", has, err)
	}
	v, err := b.Get(ctx, "empty")
	if err != nil || len(v) != 0 {
		t.Fatalf("Get(empty value) = %q, %v", v, err)
	}
	if have := kv.AllKeys(ctx, b); !slices.Equal(have, []string{"empty"}) {
		t.Errorf("keys = %v", have)
	}
}

func TestGetReturnsCopy(t *testing.T) {
	b := openTestBucket(t)
	ctx := context.Background()
	val := []byte("original")
	if err := b.Set(ctx, "k", val); err != nil {
		t.Fatal(err)
	}
	txn, _ := b.Begin()
	if err := txn.Set(ctx, "t", val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the caller reusing its buffer must not change stored data
	for _, r := range []kv.ROBucket{b, txn} {
		for _, key := range []string{"k", "t"} {
			v, err := r.Get(ctx, key)
			if errors.Is(err, kv.ErrKeyNotFound) {
				continue // "t" is not in the parent
			} else if err != nil {
				t.Fatal(err)
			}
			if string(v) != "original" {
				t.Errorf("%T Get(%s) = %q", r, key, v)
			}
			v[0] = 'Y'
			if again, _ := r.Get(ctx, key); string(again) != "original" {
				t.Errorf("%T Get(%s) returned shared memory", r, key)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	b := openTestBucket(t)
	ctx := context.Background()
	txn, err := b.Begin()
	if err != nil {
		t.Fatal(err)
	}
	bigKey := strings.Repeat("k", MaxKeySize+1)
	bigValue := make([]byte, MaxValueSize+1)
	for _, bk := range []kv.CRUDBucket{b, txn} {
		name := fmt.Sprintf("%T", bk)
		for _, tc := range []struct {
			key  string
			want error
		}{{"", ErrEmptyKey}, {bigKey, ErrKeyTooLarge}} {
			if err := bk.Set(ctx, tc.key, []byte("v")); !errors.Is(err, tc.want) {
				t.Errorf("%s Set key len %d: %v, want %v", name, len(tc.key), err, tc.want)
			}
			if _, err := bk.Get(ctx, tc.key); !errors.Is(err, tc.want) {
				t.Errorf("%s Get key len %d: %v, want %v", name, len(tc.key), err, tc.want)
			}
			if _, err := bk.Has(ctx, tc.key); !errors.Is(err, tc.want) {
				t.Errorf("%s Has key len %d: %v, want %v", name, len(tc.key), err, tc.want)
			}
			if err := bk.Delete(ctx, tc.key); !errors.Is(err, tc.want) {
				t.Errorf("%s Delete key len %d: %v, want %v", name, len(tc.key), err, tc.want)
			}
		}
		if err := bk.Set(ctx, "big", bigValue); !errors.Is(err, ErrValueTooLarge) {
			t.Errorf("%s Set %d-byte value: %v, want ErrValueTooLarge", name, len(bigValue), err)
		}
	}
	// Rejected writes left nothing behind, and the limits themselves pass.
	if err := txn.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := kv.AllKeys(ctx, b); len(keys) != 0 {
		t.Errorf("rejected writes stored keys: %d", len(keys))
	}
	// The limits themselves are allowed. (A real 32 MiB commit takes
	// seconds under -race, so the value limit is checked with the validator
	// that Set and Txn.Set both call.)
	if err := b.Set(ctx, strings.Repeat("k", MaxKeySize), []byte("v")); err != nil {
		t.Errorf("Set with a %d-byte key: %v", MaxKeySize, err)
	}
	if err := checkValue(bigValue[:MaxValueSize]); err != nil {
		t.Errorf("%d-byte value rejected: %v", MaxValueSize, err)
	}
	if _, err := b.store.Bucket(""); err == nil {
		t.Error("Bucket(\"\") succeeded")
	}
	if _, err := b.store.Bucket(strings.Repeat("b", 256)); err == nil {
		t.Error("Bucket with a 256-byte name succeeded")
	}
}

func TestTxnAtomicAndIsolated(t *testing.T) {
	b := openTestBucket(t)
	ctx := context.Background()
	if err := kv.SetMap(ctx, b, map[string][]byte{"c": []byte("3"), "d": []byte("4")}); err != nil {
		t.Fatal(err)
	}
	txn, _ := b.Begin()
	if err := kv.SetMap(ctx, txn, map[string][]byte{"a": []byte("1"), "b": []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if err := txn.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if has, _ := txn.Has(ctx, "c"); has {
		t.Error("txn sees its own deleted key")
	}
	if have := kv.AllKeys(ctx, txn); !slices.Equal(have, []string{"a", "b", "d"}) {
		t.Errorf("txn keys = %v", have)
	}
	if have := kv.AllKeys(ctx, b); !slices.Equal(have, []string{"c", "d"}) {
		t.Errorf("parent keys before commit = %v", have)
	}
	if err := txn.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if have := kv.AllKeys(ctx, b); !slices.Equal(have, []string{"a", "b", "d"}) {
		t.Errorf("parent keys after commit = %v", have)
	}
}

func TestTxnConflict(t *testing.T) {
	ctx := context.Background()
	type step func(b *Bucket, txn *Txn) error
	setParent := func(b *Bucket, _ *Txn) error { return b.Set(ctx, "k", []byte("changed")) }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"get-then-parent-set", []step{
			func(_ *Bucket, txn *Txn) error { _, err := txn.Get(ctx, "k"); return err },
			setParent,
		}},
		{"has-missing-then-parent-set", []step{
			func(_ *Bucket, txn *Txn) error { _, err := txn.Has(ctx, "missing"); return err },
			func(b *Bucket, _ *Txn) error { return b.Set(ctx, "missing", []byte("now here")) },
		}},
		{"get-then-parent-delete", []step{
			func(_ *Bucket, txn *Txn) error { _, err := txn.Get(ctx, "k"); return err },
			func(b *Bucket, _ *Txn) error { return b.Delete(ctx, "k") },
		}},
		{"unstable-reads-even-if-restored", []step{
			func(_ *Bucket, txn *Txn) error { _, err := txn.Get(ctx, "k"); return err },
			setParent,
			func(_ *Bucket, txn *Txn) error { _, err := txn.Get(ctx, "k"); return err },
			func(b *Bucket, _ *Txn) error { return b.Set(ctx, "k", []byte("orig")) },
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openTestBucket(t)
			if err := b.Set(ctx, "k", []byte("orig")); err != nil {
				t.Fatal(err)
			}
			txn, _ := b.Begin()
			for _, s := range tc.steps {
				if err := s(b, txn); err != nil {
					t.Fatal(err)
				}
			}
			if err := txn.Set(ctx, "written", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := txn.Commit(ctx); !errors.Is(err, ErrTxnConflict) {
				t.Fatalf("Commit = %v, want ErrTxnConflict", err)
			}
			if has, _ := b.Has(ctx, "written"); has {
				t.Error("a conflicting commit wrote its changes")
			}
			// The transaction is empty again and usable.
			if err := txn.Set(ctx, "written", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if err := txn.Commit(ctx); err != nil {
				t.Fatalf("retry commit: %v", err)
			}
			if has, _ := b.Has(ctx, "written"); !has {
				t.Error("retried commit not written")
			}
		})
	}

	t.Run("own-writes-and-unrelated-parent-writes-do-not-conflict", func(t *testing.T) {
		b := openTestBucket(t)
		txn, _ := b.Begin()
		if err := txn.Set(ctx, "k", []byte("mine")); err != nil {
			t.Fatal(err)
		}
		if v, err := txn.Get(ctx, "k"); err != nil || string(v) != "mine" {
			t.Fatalf("read own write = %q, %v", v, err)
		}
		if _, err := txn.Get(ctx, "other"); !errors.Is(err, kv.ErrKeyNotFound) {
			t.Fatal(err)
		}
		if err := b.Set(ctx, "unrelated", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := txn.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestKeysStreamStops(t *testing.T) {
	b := openTestBucket(t)
	ctx := context.Background()
	for i := range 50 {
		if err := b.Set(ctx, fmt.Sprintf("key-%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	txn, _ := b.Begin()
	drained := func(t *testing.T, ch <-chan string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for n := 0; ; n++ {
			select {
			case _, ok := <-ch:
				if !ok {
					if n > 1 {
						t.Errorf("%d keys delivered after the stream was stopped", n)
					}
					return
				}
			case <-timeout:
				t.Fatal("key stream not closed after stop")
			}
		}
	}
	for _, tr := range []kv.KeysPrefixTraverser{b, txn} {
		t.Run(fmt.Sprintf("%T/cancel", tr), func(t *testing.T) {
			cancel := make(chan struct{})
			ch := tr.KeysPrefix(ctx, "key-", cancel)
			if k := <-ch; k != "key-00" {
				t.Errorf("first key %q, want key-00 (ascending order)", k)
			}
			close(cancel)
			drained(t, ch)
		})
		t.Run(fmt.Sprintf("%T/ctx", tr), func(t *testing.T) {
			cctx, stop := context.WithCancel(ctx)
			ch := tr.KeysPrefix(cctx, "", nil)
			<-ch
			stop()
			drained(t, ch)
		})
	}
}

// An unread key stream must not hold a bbolt read transaction: that would
// block a writer that needs to grow the memory map.
func TestKeysStreamHoldsNoTransaction(t *testing.T) {
	b := openTestBucket(t)
	ctx := context.Background()
	if err := b.Set(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	cancel := make(chan struct{})
	defer close(cancel)
	_ = b.Keys(ctx, cancel) // never read
	done := make(chan error, 1)
	go func() {
		big := bytes.Repeat([]byte{1}, 256<<10)
		for i := range 8 { // 2 MiB: bbolt remaps a fresh file several times
			if err := b.Set(ctx, fmt.Sprintf("big-%d", i), big); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writes blocked behind an unread key stream")
	}
}
