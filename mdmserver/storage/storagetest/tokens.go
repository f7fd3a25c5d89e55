package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// testTokens is the contract of tokens.Repository, and the token rules over it: creation,
// authentication, revocation, people and their creators, and the migration to people.
func testTokens(t *testing.T, open Opener) {
	t.Run("repository", func(t *testing.T) { tokensRepository(t, open) })
	t.Run("create authenticate revoke", func(t *testing.T) { tokensCreateAuthenticateRevoke(t, open) })
	t.Run("people and creators", func(t *testing.T) { tokensPersonAndCreators(t, open) })
	t.Run("migration to people", func(t *testing.T) { tokensMigratePeople(t, open) })
	t.Run("concurrent authentication and creation", func(t *testing.T) { tokensConcurrent(t, open) })
	t.Run("reopen", func(t *testing.T) { tokensReopen(t, open) })
}

// tokensStore narrows st to the token service's units of work, as the server does.
func tokensStore(st storage.Store) tokens.Store {
	return storage.Scope(st, func(tx storage.Tx) tokens.Tx { return tx })
}

// tokensService is the token service on st.
func tokensService(t *testing.T, st storage.Store, opts ...tokens.Option) *tokens.Service {
	t.Helper()
	s, err := tokens.New(context.Background(), tokensStore(st), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokensCreateAuthenticateRevoke(t *testing.T, open Opener) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := tokensService(t, Fresh(t, open), tokens.WithClock(func() time.Time { return now }))

	rec, secret, err := s.Create(ctx, tokens.NewRequest{Name: "it-desk", Role: tokens.RoleIT, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.Hash, secret[len("hale_")+17:]) {
		t.Fatal("record holds the secret")
	}
	got, err := s.Authenticate(ctx, secret)
	if err != nil || got.ID != rec.ID || got.Role != tokens.RoleIT {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	// A changed secret with the right id is unknown, not a different error.
	wrong := secret[:len(secret)-1] + map[bool]string{true: "0", false: "1"}[secret[len(secret)-1] != '0']
	if _, err := s.Authenticate(ctx, wrong); !errors.Is(err, tokens.ErrUnknown) {
		t.Errorf("wrong secret: %v", err)
	}
	for _, bad := range []string{"", "hale_", "hale_zz_yy", "Bearer x", strings.Repeat("a", 500)} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, tokens.ErrMalformed) {
			t.Errorf("Authenticate(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	now = now.Add(2 * time.Hour)
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, tokens.ErrExpired) {
		t.Errorf("after expiry: %v", err)
	}
	_, secret2, _ := s.Create(ctx, tokens.NewRequest{Name: "sec", Role: tokens.RoleSecurity})
	if _, err := s.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, "nope"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	tok2, _ := s.Authenticate(ctx, secret2)
	s.Revoke(ctx, tok2.ID)
	if _, err := s.Authenticate(ctx, secret2); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("after revoke: %v", err)
	}
	if _, _, err := s.Create(ctx, tokens.NewRequest{Name: "x", Role: "root"}); err == nil {
		t.Error("unknown role accepted")
	}
	list, _ := s.List(ctx)
	if len(list) != 2 {
		t.Errorf("List has %d tokens", len(list))
	}
}

// A token belongs to the person it names, else to its creator's person; Creators walks up to
// the bootstrap token.
func tokensPersonAndCreators(t *testing.T, open Opener) {
	ctx := context.Background()
	s := tokensService(t, Fresh(t, open))
	boot, _, err := s.Create(ctx, tokens.NewRequest{Name: "bootstrap", Role: tokens.RoleAdmin, Person: "bootstrap", CreatedBy: "mdmserver"})
	if err != nil {
		t.Fatal(err)
	}
	alex, _, _ := s.Create(ctx, tokens.NewRequest{Name: "alex", Role: tokens.RoleAdmin, Person: "alex", Creator: boot})
	own, _, _ := s.Create(ctx, tokens.NewRequest{Name: "alex-sec", Role: tokens.RoleSecurity, Creator: alex})
	x, _, _ := s.Create(ctx, tokens.NewRequest{Name: "x", Role: tokens.RoleSecurity, Person: "xavier", Creator: alex})
	if own.Person != "alex" || x.Person != "xavier" || x.CreatorPerson != "alex" || x.CreatorTokenID != alex.ID {
		t.Fatalf("people: own %+v, x %+v", own, x)
	}
	for tok, want := range map[*tokens.Token][]string{boot: nil, alex: {"bootstrap"}, x: {"alex", "bootstrap"}} {
		if got, err := s.Creators(ctx, tok); err != nil || !slices.Equal(got, want) {
			t.Errorf("Creators(%s) = %v, %v; want %v", tok.Name, got, err, want)
		}
	}
	if _, _, err := s.Create(ctx, tokens.NewRequest{Name: "n", Role: tokens.RoleIT, Person: "bad\nperson", Creator: boot}); !errors.Is(err, tokens.ErrInvalidPerson) {
		t.Fatalf("invalid person: %v", err)
	}
}

// Opening a store whose tokens were written before tokens had people gives each a person named
// after it and links it to its creator; a second opening changes nothing.
func tokensMigratePeople(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	// Records as an earlier release wrote them: no person, no creator link.
	legacy := map[string]tokens.Token{
		"00000000000000b0": {Name: "bootstrap", Role: "admin", CreatedBy: "mdmserver"},
		"00000000000000a1": {Name: "secops", Role: "security", CreatedBy: "bootstrap (00000000000000b0)"},
		"00000000000000a2": {Name: "secops", Role: "security", CreatedBy: "bootstrap (00000000000000b0)"},
		"00000000000000a3": {Name: "odd\nname", Role: "it", CreatedBy: "gone (00000000000000ff)"},
	}
	err := st.Update(ctx, func(tx storage.Tx) error {
		for id, rec := range legacy {
			rec.ID, rec.Hash = id, strings.Repeat("0", 64)
			if err := tx.Tokens().Put(ctx, &rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"00000000000000b0": "bootstrap<",
		"00000000000000a1": "secops<bootstrap",
		"00000000000000a2": "secops<bootstrap",
		"00000000000000a3": "token-00000000000000a3<",
	}
	for range 2 {
		s, err := tokens.New(ctx, tokensStore(st))
		if err != nil {
			t.Fatal(err)
		}
		list, _ := s.List(ctx)
		got := map[string]string{}
		for _, tok := range list {
			got[tok.ID] = tok.Person + "<" + tok.CreatorPerson
		}
		if len(got) != len(want) {
			t.Fatalf("tokens after migration: %v", got)
		}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("token %s: %q, want %q", id, got[id], w)
			}
		}
	}
	var migrated int
	err = st.Update(ctx, func(tx storage.Tx) error {
		migrated, err = tokens.MigratePeople(ctx, tx.Tokens())
		return err
	})
	if err != nil || migrated != 0 {
		t.Fatalf("a third run migrated %d (%v), want 0", migrated, err)
	}
}

func tokensRepository(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := tokens.Token{ID: "00000000000000a1", Name: "secops", Role: tokens.RoleSecurity, Person: "dana", CreatedAt: t0,
		CreatedBy: "boot (00000000000000b0)", CreatorTokenID: "00000000000000b0", CreatorPerson: "bootstrap",
		ExpiresAt: t0.Add(time.Hour), RevokedAt: t0.Add(time.Minute), Hash: strings.Repeat("a", 64)}
	b := tokens.Token{ID: "00000000000000b0", Name: "boot", Role: tokens.RoleAdmin, Person: "bootstrap", CreatedAt: t0, Hash: strings.Repeat("b", 64)}
	err := st.View(ctx, func(tx storage.Tx) error {
		if n, err := tx.Tokens().Count(ctx); err != nil || n != 0 {
			t.Errorf("Count of a new store = %d, %v", n, err)
		}
		if _, err := tx.Tokens().Get(ctx, a.ID); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("Get of a new store: %v, want ErrNotFound", err)
		}
		if err := tx.Tokens().Put(ctx, &a); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Put in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx storage.Tx) error {
		for _, tok := range []tokens.Token{a, b} {
			if err := tx.Tokens().Put(ctx, &tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failed unit of work leaves nothing: neither a new token nor a change to one.
	failed := errors.New("unit failed")
	err = st.Update(ctx, func(tx storage.Tx) error {
		c := b
		c.ID = "00000000000000c0"
		if err := tx.Tokens().Put(ctx, &c); err != nil {
			return err
		}
		changed := b
		changed.RevokedAt = t0
		if err := tx.Tokens().Put(ctx, &changed); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Tokens()
		got, err := r.Get(ctx, a.ID)
		if err != nil || !sameToken(*got, a) {
			t.Errorf("Get = %+v, %v; want %+v", got, err, a)
		}
		if got, err := r.Get(ctx, b.ID); err != nil || !got.RevokedAt.IsZero() {
			t.Errorf("token changed by a failed unit: %+v, %v", got, err)
		}
		if _, err := r.Get(ctx, "00000000000000c0"); !errors.Is(err, tokens.ErrNotFound) {
			t.Errorf("token of a failed unit: %v, want ErrNotFound", err)
		}
		if n, err := r.Count(ctx); err != nil || n != 2 {
			t.Errorf("Count = %d, %v; want 2", n, err)
		}
		list, err := r.List(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("List = %+v, %v", list, err)
		}
		for _, got := range list {
			if want := map[string]tokens.Token{a.ID: a, b.ID: b}[got.ID]; !sameToken(*got, want) {
				t.Errorf("listed %+v, want %+v", got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sameToken compares two token records field by field.
func sameToken(a, b tokens.Token) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Role == b.Role && a.Person == b.Person && a.CreatedAt.Equal(b.CreatedAt) &&
		a.CreatedBy == b.CreatedBy && a.CreatorTokenID == b.CreatorTokenID && a.CreatorPerson == b.CreatorPerson &&
		a.ExpiresAt.Equal(b.ExpiresAt) && a.RevokedAt.Equal(b.RevokedAt) && a.Hash == b.Hash
}

// Every API request authenticates; tokens are made and revoked meanwhile.
func tokensConcurrent(t *testing.T, open Opener) {
	ctx := context.Background()
	s := tokensService(t, Fresh(t, open))
	_, secret, err := s.Create(ctx, tokens.NewRequest{Name: "access", Role: tokens.RoleAccess})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := s.Authenticate(ctx, secret); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			tok, _, err := s.Create(ctx, tokens.NewRequest{Name: fmt.Sprintf("t%d", w), Role: tokens.RoleIT})
			if err == nil {
				_, err = s.Revoke(ctx, tok.ID)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx); err != nil || n != 9 {
		t.Fatalf("Count = %d, %v; want 9", n, err)
	}
}

func tokensReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	first := st
	t.Cleanup(func() { _ = first.Close() }) // should the test end before Reopen closes it
	s := tokensService(t, st)
	boot, _, err := s.Create(ctx, tokens.NewRequest{Name: "bootstrap", Role: tokens.RoleAdmin, Person: "bootstrap"})
	if err != nil {
		t.Fatal(err)
	}
	tok, secret, err := s.Create(ctx, tokens.NewRequest{Name: "sec", Role: tokens.RoleSecurity, Creator: boot})
	if err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	s = tokensService(t, st)
	got, err := s.Authenticate(ctx, secret)
	if err != nil || !sameToken(*got, *tok) {
		t.Fatalf("after reopen: %+v, %v; want %+v", got, err, tok)
	}
	if creators, err := s.Creators(ctx, got); err != nil || !slices.Equal(creators, []string{"bootstrap"}) {
		t.Fatalf("creators after reopen: %v, %v", creators, err)
	}
}
