package mdmserver_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// Every token route, with every role, no token, a wrong token, an expired one and a revoked one:
// 401 without a valid token, 403 for a role the route does not list, and through to the handler
// otherwise (200 for the plain listings).
func TestRoleTable(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	byRole := map[tokens.Role]string{}
	for _, r := range tokens.Roles {
		byRole[r] = env.token(string(r))
	}
	// A token created an hour ago with a minute to live, and one revoked.
	past, err := tokens.New(ctx, storage.Scope(env.Store(), func(tx storage.Tx) tokens.Tx { return tx }), tokens.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	_, expired, _ := past.Create(ctx, tokens.NewRequest{Name: "old", Role: tokens.RoleAdmin, TTL: time.Minute})
	rec, revoked, _ := env.TokensForTest().Create(ctx, tokens.NewRequest{Name: "gone", Role: tokens.RoleAdmin})
	env.TokensForTest().Revoke(ctx, rec.ID)
	wrong := "hale_0123456789abcdef_" + strings.Repeat("0", 64)

	// Routes that need query parameters get valid ones, so an allowed role reaches a 200.
	queries := map[string]string{
		"GET /api/v1/audit/proof/inclusion":   "?index=0&tree_size=1",
		"GET /api/v1/audit/proof/consistency": "?old=0&new=1",
	}
	// Routes whose plain GET answers something else than 200 to an allowed role: a stream's
	// status needs a stream_id, and a probe has no stream; a fresh server has no Android
	// binding.
	not200 := map[string]bool{"GET /ssf/v1/status": true, "GET /api/v1/android/binding": true}
	placeholders := strings.NewReplacer("{id}", "d_00000000000000aa", "{name}", "probe", "{uuid}", "UUID")
	for _, rt := range env.TokenRoutesForTest() {
		method, pattern, _ := strings.Cut(rt.Pattern, " ")
		path := placeholders.Replace(pattern) + queries[rt.Pattern]
		body := ""
		if method == "POST" || method == "PUT" {
			body = "{}"
		}
		for name, tok := range map[string]string{"no token": "", "wrong": wrong, "expired": expired, "revoked": revoked} {
			if code := env.call(method, path, tok, []byte(body), nil); code != 401 {
				t.Errorf("%s with %s token: %d, want 401", rt.Pattern, name, code)
			}
		}
		for role, tok := range byRole {
			allowed := role == tokens.RoleAdmin || slices.Contains(rt.Roles, role)
			code := env.call(method, path, tok, []byte(body), nil)
			switch {
			case !allowed && code != 403:
				t.Errorf("%s as %s: %d, want 403", rt.Pattern, role, code)
			case allowed && (code == 401 || code == 403):
				t.Errorf("%s as %s: %d, want the handler's answer", rt.Pattern, role, code)
			case allowed && method == "GET" && !strings.Contains(pattern, "{") && !not200[rt.Pattern] && code != 200:
				t.Errorf("%s as %s: %d, want 200", rt.Pattern, role, code)
			}
		}
	}
}
