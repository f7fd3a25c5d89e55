package storagetest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testSigning is the contract of signing.Repository, and the keyset's rules over it that
// depend on what the store keeps.
func testSigning(t *testing.T, open Opener) {
	t.Run("contract", func(t *testing.T) { signingContract(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { signingRollback(t, open) })
	t.Run("concurrent rotations", func(t *testing.T) { signingConcurrent(t, open) })
	t.Run("wrong seal key fails closed", func(t *testing.T) { signingWrongSealKey(t, open) })
	t.Run("key under wrong kid rejected", func(t *testing.T) { signingWrongKid(t, open) })
}

// keyStore narrows st to the signing keyset's repository, as the server does.
func keyStore(st storage.Store) signing.Store {
	return storage.Scope(st, func(tx storage.Tx) signing.Tx { return tx })
}

// sealKeyOf is a seal key made of one repeated byte.
func sealKeyOf(t *testing.T, b byte) *seal.Key {
	t.Helper()
	k, err := seal.New(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedKeys returns every stored signing key by kid.
func storedKeys(t *testing.T, st storage.Store) map[string]signing.StoredKey {
	t.Helper()
	out := map[string]signing.StoredKey{}
	err := st.View(context.Background(), func(tx storage.Tx) error {
		ks, err := tx.Signing().Keys(context.Background())
		for _, k := range ks {
			out[k.KID] = k
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func signingContract(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := signing.StoredKey{KID: "kid-a", Alg: "ES256", CreatedAt: t0, SealedKey: []byte("sealed a")}
	b := signing.StoredKey{KID: "kid-b", Alg: "ES256", CreatedAt: t0.Add(time.Hour), RetiredAt: t0.Add(2 * time.Hour), SealedKey: []byte("sealed b")}
	err := st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Signing()
		if err := r.PutKey(ctx, b); err != nil {
			return err
		}
		return r.PutKey(ctx, a)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Signing()
		ks, err := r.Keys(ctx)
		if err != nil {
			return err
		}
		if len(ks) != 2 || ks[0].KID != "kid-a" || ks[1].KID != "kid-b" {
			t.Errorf("Keys = %+v, want kid-a then kid-b", ks)
		}
		got, err := r.Key(ctx, "kid-b")
		if err != nil || !got.RetiredAt.Equal(b.RetiredAt) || !got.CreatedAt.Equal(b.CreatedAt) || string(got.SealedKey) != "sealed b" || got.Alg != "ES256" {
			t.Errorf("Key(kid-b) = %+v, %v", got, err)
		}
		if _, err := r.Key(ctx, "kid-c"); !errors.Is(err, signing.ErrKeyNotFound) {
			t.Errorf("Key of a missing kid: %v, want ErrKeyNotFound", err)
		}
		if err := r.PutKey(ctx, a); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("PutKey in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Retire a, delete b (and a missing key), then check it all after a reopen.
	err = st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Signing()
		a.RetiredAt = t0.Add(3 * time.Hour)
		if err := r.PutKey(ctx, a); err != nil {
			return err
		}
		if err := r.DeleteKey(ctx, "kid-missing"); err != nil {
			return err
		}
		return r.DeleteKey(ctx, "kid-b")
	})
	if err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	ks := storedKeys(t, st)
	if len(ks) != 1 || !ks["kid-a"].RetiredAt.Equal(a.RetiredAt) {
		t.Fatalf("after reopen: %+v", ks)
	}
}

func signingRollback(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.Signing().PutKey(ctx, signing.StoredKey{KID: "kid-a", Alg: "ES256", SealedKey: []byte("x")}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if ks := storedKeys(t, st); len(ks) != 0 {
		t.Fatalf("a failed unit of work left %d keys", len(ks))
	}
}

// signingConcurrent rotates one keyset from many goroutines (for -race): every rotation
// commits, and the store ends with one current key and the rest retired.
func signingConcurrent(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	k, err := signing.Open(ctx, keyStore(st), sealKeyOf(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() { errs <- k.Rotate(ctx) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	current := 0
	ks := storedKeys(t, st)
	for _, sk := range ks {
		if sk.RetiredAt.IsZero() {
			current++
		}
	}
	if len(ks) != n+1 || current != 1 {
		t.Fatalf("%d keys stored, %d current; want %d and 1", len(ks), current, n+1)
	}
}

func signingWrongSealKey(t *testing.T, open Opener) {
	db := Fresh(t, open)
	ctx := context.Background()
	if _, err := signing.Open(ctx, keyStore(db), sealKeyOf(t, 1)); err != nil {
		t.Fatal(err)
	}
	before := storedKeys(t, db)

	if _, err := signing.Open(ctx, keyStore(db), sealKeyOf(t, 2)); err == nil {
		t.Fatal("Open with the wrong seal key succeeded")
	}
	if after := storedKeys(t, db); !maps.EqualFunc(before, after, sameStoredKey) {
		t.Fatal("a failed Open changed the stored keys")
	}
	// The right key still opens it.
	if _, err := signing.Open(ctx, keyStore(db), sealKeyOf(t, 1)); err != nil {
		t.Fatal(err)
	}
}

func sameStoredKey(a, b signing.StoredKey) bool {
	return a.KID == b.KID && a.Alg == b.Alg && a.CreatedAt.Equal(b.CreatedAt) && a.RetiredAt.Equal(b.RetiredAt) &&
		bytes.Equal(a.SealedKey, b.SealedKey)
}

func signingWrongKid(t *testing.T, open Opener) {
	db := Fresh(t, open)
	ctx := context.Background()
	if _, err := signing.Open(ctx, keyStore(db), sealKeyOf(t, 1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx storage.Tx) error {
		r := tx.Signing()
		ks, err := r.Keys(ctx)
		if err != nil || len(ks) != 1 {
			t.Fatalf("stored keys %+v, %v", ks, err)
		}
		if err := r.DeleteKey(ctx, ks[0].KID); err != nil {
			return err
		}
		ks[0].KID = "some-other-kid"
		return r.PutKey(ctx, ks[0])
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.Open(ctx, keyStore(db), sealKeyOf(t, 1)); err == nil {
		t.Fatal("Open accepted a key stored under a kid that is not its thumbprint")
	}
}
