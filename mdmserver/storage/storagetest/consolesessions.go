package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/consolesession"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// testConsoleSessions is the contract of consolesession.Repository: put, replace, get (a missing
// key is nil), list, delete (a missing key included), refused in a View, and kept across a
// reopen.
func testConsoleSessions(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	a := consolesession.Session{Key: "aa11", TokenID: "0123456789abcdef", Via: "token", CSRF: "c1", Created: t0, LastSeen: t0,
		Who: tokens.Token{ID: "0123456789abcdef", Name: "desk", Role: tokens.RoleSecurity, Person: "Dana"}}
	b := consolesession.Session{Key: "bb22", TokenID: "oidc0123456789ab", Via: "oidc", CSRF: "c2", Created: t0, LastSeen: t0,
		Who: tokens.Token{ID: "oidc0123456789ab", Name: "oidc:lee@example.org", Role: tokens.RoleAuditor, Person: "lee@example.org", CreatedAt: t0}}
	list := func(st storage.Store) map[string]consolesession.Session {
		t.Helper()
		out := map[string]consolesession.Session{}
		view(t, st, func(ctx context.Context, tx storage.Tx) error {
			l, err := tx.ConsoleSessions().List(ctx)
			for _, s := range l {
				out[s.Key] = s
			}
			return err
		})
		return out
	}
	if got := list(st); len(got) != 0 {
		t.Fatalf("sessions in a new store: %v", got)
	}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		if err := tx.ConsoleSessions().Put(ctx, &a); err != nil {
			return err
		}
		return tx.ConsoleSessions().Put(ctx, &b)
	})
	a.LastSeen = t0.Add(5 * time.Minute)
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.ConsoleSessions().Put(ctx, &a) })
	got := list(st)
	if len(got) != 2 || !got["aa11"].LastSeen.Equal(a.LastSeen) || got["bb22"].Who.Person != "lee@example.org" || got["aa11"].CSRF != "c1" {
		t.Fatalf("after put and replace: %+v", got)
	}
	a.Flash, a.FlashKind = "Lock queued", "ok"
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.ConsoleSessions().Put(ctx, &a) })
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		g, err := tx.ConsoleSessions().Get(ctx, "aa11")
		if err != nil {
			return err
		}
		if g == nil || !g.LastSeen.Equal(a.LastSeen) || g.Flash != "Lock queued" || g.FlashKind != "ok" || g.Who.Role != tokens.RoleSecurity {
			t.Errorf("Get(aa11) = %+v", g)
		}
		if g, err := tx.ConsoleSessions().Get(ctx, "missing"); err != nil || g != nil {
			t.Errorf("Get(missing) = %+v, %v; want nil, nil", g, err)
		}
		return nil
	})
	err := st.View(context.Background(), func(tx storage.Tx) error { return tx.ConsoleSessions().Put(context.Background(), &a) })
	if err == nil {
		t.Fatal("Put in a View succeeded")
	}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		if err := tx.ConsoleSessions().Delete(ctx, "bb22"); err != nil {
			return err
		}
		return tx.ConsoleSessions().Delete(ctx, "missing")
	})
	st = Reopen(t, open, st, dir)
	if got := list(st); len(got) != 1 || got["aa11"].Who.Role != tokens.RoleSecurity || !got["aa11"].Created.Equal(t0) {
		t.Fatalf("after delete and reopen: %+v", got)
	}
}
