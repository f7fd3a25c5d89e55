package signing_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/posture"
)

// TestReloadFollowsRotation: a replica's keyset on the primary's store follows a rotation and
// a prune after Reload, and signs with the primary's current key.
func TestReloadFollowsRotation(t *testing.T) {
	db, _ := newDB(t)
	sk := sealKey(t, 1)
	c := newClock()
	const every, overlap = 24 * time.Hour, 2 * time.Hour
	opts := []signing.Option{signing.WithClock(c.Now), signing.WithRotation(every, overlap)}
	primary := mustOpen(t, db, sk, opts...)
	replica := mustOpen(t, db, sk, opts...)
	ctx := context.Background()

	oldKid, _ := verify(t, jwks(t, primary), sign(t, primary, posture.TokenType, tokenClaims("a")), posture.TokenType)
	if got := kids(jwks(t, replica)); !slices.Equal(got, []string{oldKid}) {
		t.Fatalf("replica JWKS %v, want [%s]", got, oldKid)
	}

	c.Advance(time.Hour)
	if err := primary.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	newTok := sign(t, primary, posture.TokenType, tokenClaims("b"))
	if !verifyFails(t, jwks(t, replica), newTok) {
		t.Fatal("replica verifies the new key's token before Reload: the test proves nothing")
	}
	if err := replica.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	set := jwks(t, replica)
	newKid, _ := verify(t, set, newTok, posture.TokenType)
	if got := kids(set); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Fatalf("replica JWKS after Reload %v, want [%s %s]", got, newKid, oldKid)
	}
	if !slices.Equal(kids(set), kids(jwks(t, primary))) {
		t.Fatalf("replica JWKS %v differs from the primary's %v", kids(set), kids(jwks(t, primary)))
	}
	// The replica now signs with the primary's current key.
	if kid, _ := verify(t, jwks(t, primary), sign(t, replica, posture.SETType, map[string]string{"jti": "c"}), posture.SETType); kid != newKid {
		t.Fatalf("replica signs with %s, want %s", kid, newKid)
	}

	// The primary prunes the retired key once its overlap ended; the replica follows.
	c.Advance(overlap)
	if _, err := primary.RotateIfDue(ctx); err != nil {
		t.Fatal(err)
	}
	if err := replica.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kids(jwks(t, replica)); !slices.Equal(got, []string{newKid}) {
		t.Fatalf("replica JWKS after prune %v, want [%s]", got, newKid)
	}
}

// TestReloadFailsClosed: a key the replica cannot open, or a store without a current key,
// fails Reload and leaves the keyset signing with what it had.
func TestReloadFailsClosed(t *testing.T) {
	db, _ := newDB(t)
	c := newClock()
	replica := mustOpen(t, db, sealKey(t, 1), signing.WithClock(c.Now))
	ctx := context.Background()
	kid, _ := verify(t, jwks(t, replica), sign(t, replica, posture.TokenType, tokenClaims("a")), posture.TokenType)

	// A key sealed under another master key appears in the store: it does not open here.
	stranger := sealKey(t, 2)
	if err := db.Update(ctx, func(tx storage.Tx) error {
		stored, err := tx.Signing().Keys(ctx)
		if err != nil {
			return err
		}
		k := stored[0]
		k.KID, k.SealedKey = "stranger", stranger.Seal("hale/signing-key", []byte("not a key"))
		return tx.Signing().PutKey(ctx, k)
	}); err != nil {
		t.Fatal(err)
	}
	if err := replica.Reload(ctx); err == nil {
		t.Fatal("Reload accepted a key sealed under another master key")
	}
	if got, _ := verify(t, jwks(t, replica), sign(t, replica, posture.TokenType, tokenClaims("b")), posture.TokenType); got != kid {
		t.Fatalf("after a failed Reload the replica signs with %s, want %s", got, kid)
	}

	// An empty store: no current key to follow.
	if err := db.Update(ctx, func(tx storage.Tx) error {
		stored, err := tx.Signing().Keys(ctx)
		for _, k := range stored {
			if err == nil {
				err = tx.Signing().DeleteKey(ctx, k.KID)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := replica.Reload(ctx); err == nil {
		t.Fatal("Reload accepted a store without a current key")
	}
	verify(t, jwks(t, replica), sign(t, replica, posture.TokenType, tokenClaims("c")), posture.TokenType)
}
