package tokens_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// The tokens' storage contract, and the rules over it, are tested on every backend by
// storagetest; these tests are of the HTTP middleware, on the bbolt backend.

// newService returns a token service on a new bbolt store.
func newService(t *testing.T, opts ...tokens.Option) *tokens.Service {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := tokens.New(context.Background(), storage.Scope(st, func(tx storage.Tx) tokens.Tx { return tx }), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRequire(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	_, admin, _ := s.Create(ctx, tokens.NewRequest{Name: "a", Role: tokens.RoleAdmin})
	_, it, _ := s.Create(ctx, tokens.NewRequest{Name: "i", Role: tokens.RoleIT})
	_, auditor, _ := s.Create(ctx, tokens.NewRequest{Name: "u", Role: tokens.RoleAuditor})
	h := s.Require(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tokens.FromContext(r.Context()) == nil {
			t.Error("no token in context")
		}
	}), tokens.RoleIT)
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
