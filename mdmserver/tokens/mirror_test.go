package tokens_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// A service with a mirror checks tokens against its copy: one made or revoked elsewhere (the
// primary) counts once RefreshTokens read it, and not before.
func TestMirror(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	scoped := storage.Scope(st, func(tx storage.Tx) tokens.Tx { return tx })
	primary, err := tokens.New(ctx, scoped)
	if err != nil {
		t.Fatal(err)
	}
	before, beforeSecret, err := primary.Create(ctx, tokens.NewRequest{Name: "old", Role: tokens.RoleAccess, Person: "a", CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	replica, err := tokens.New(ctx, scoped, tokens.WithMirror())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Authenticate(ctx, beforeSecret); err != nil {
		t.Fatalf("a token made before the replica loaded: %v", err)
	}
	made, secret, err := primary.Create(ctx, tokens.NewRequest{Name: "new", Role: tokens.RoleAccess, Person: "b", CreatedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Authenticate(ctx, secret); !errors.Is(err, tokens.ErrUnknown) {
		t.Fatalf("a token the mirror has not read yet: %v, want ErrUnknown", err)
	}
	if err := replica.RefreshTokens(ctx, made.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Authenticate(ctx, secret); err != nil {
		t.Fatalf("after the refresh: %v", err)
	}
	if _, err := primary.Revoke(ctx, before.ID); err != nil {
		t.Fatal(err)
	}
	if err := replica.RefreshTokens(ctx, before.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Authenticate(ctx, beforeSecret); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("a token revoked on the primary: %v, want ErrRevoked", err)
	}
	// A service with a mirror that writes itself (the primary) sees its own writes at once.
	own, ownSecret, err := replica.Create(ctx, tokens.NewRequest{Name: "x", Role: tokens.RoleIT, Person: "c", CreatedBy: "t"})
	if err != nil {
		t.Fatalf("create goes to the store, not the mirror: %v", err)
	}
	if _, err := replica.Authenticate(ctx, ownSecret); err != nil {
		t.Fatalf("its own new token: %v", err)
	}
	if _, err := replica.Revoke(ctx, own.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Authenticate(ctx, ownSecret); !errors.Is(err, tokens.ErrRevoked) {
		t.Fatalf("its own revoked token: %v, want ErrRevoked", err)
	}
}
