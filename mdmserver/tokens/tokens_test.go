package tokens

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func newStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newStore(t, WithClock(func() time.Time { return now }))

	rec, secret, err := s.Create(ctx, NewRequest{Name: "it-desk", Role: RoleIT, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.Hash, secret[len(prefix)+17:]) {
		t.Fatal("record holds the secret")
	}
	got, err := s.Authenticate(ctx, secret)
	if err != nil || got.ID != rec.ID || got.Role != RoleIT {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	// A changed secret with the right id is unknown, not a different error.
	wrong := secret[:len(secret)-1] + map[bool]string{true: "0", false: "1"}[secret[len(secret)-1] != '0']
	if _, err := s.Authenticate(ctx, wrong); !errors.Is(err, ErrUnknown) {
		t.Errorf("wrong secret: %v", err)
	}
	for _, bad := range []string{"", "hale_", "hale_zz_yy", "Bearer x", strings.Repeat("a", 500)} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("Authenticate(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	now = now.Add(2 * time.Hour)
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrExpired) {
		t.Errorf("after expiry: %v", err)
	}
	_, secret2, _ := s.Create(ctx, NewRequest{Name: "sec", Role: RoleSecurity})
	if _, err := s.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	tok2, _ := s.Authenticate(ctx, secret2)
	s.Revoke(ctx, tok2.ID)
	if _, err := s.Authenticate(ctx, secret2); !errors.Is(err, ErrRevoked) {
		t.Errorf("after revoke: %v", err)
	}
	if _, _, err := s.Create(ctx, NewRequest{Name: "x", Role: "root"}); err == nil {
		t.Error("unknown role accepted")
	}
	list, _ := s.List(ctx)
	if len(list) != 2 {
		t.Errorf("List has %d tokens", len(list))
	}
}

func TestRequire(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	_, admin, _ := s.Create(ctx, NewRequest{Name: "a", Role: RoleAdmin})
	_, it, _ := s.Create(ctx, NewRequest{Name: "i", Role: RoleIT})
	_, auditor, _ := s.Create(ctx, NewRequest{Name: "u", Role: RoleAuditor})
	h := s.Require(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if FromContext(r.Context()) == nil {
			t.Error("no token in context")
		}
	}), RoleIT)
	for _, c := range []struct {
		auth string
		want int
	}{
		{"", 401}, {"Bearer " + admin, 200}, {"Bearer " + it, 200}, {"bearer " + it, 200},
		{"Bearer " + auditor, 403}, {"Basic " + it, 401}, {"Bearer hale_0000000000000000_" + strings.Repeat("0", 64), 401},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/x", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%q: status %d, want %d", c.auth, rec.Code, c.want)
		}
		if c.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%q: 401 without WWW-Authenticate", c.auth)
		}
		if c.want != 200 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%q: error is not problem+json", c.auth)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("hale_0123456789abcdef_" + strings.Repeat("ab", 32))
	f.Add("hale__")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := parse(s)
		if ok && (len(id) != 16 || len(secret) != 64 || !strings.HasPrefix(s, prefix)) {
			t.Fatalf("parse accepted %q as %q/%q", s, id, secret)
		}
	})
}
