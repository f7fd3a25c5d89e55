package console

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/httpapi"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/mdmserver/tokens"
)

// oidcCluster is two Consoles on one store signing people in through one local provider, on
// the real clock (the provider's ID tokens are). key nil: no seal key.
func oidcCluster(t *testing.T, key *seal.Key) (a, b *Console, m *mockoidc.MockOIDC) {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "hale.db"), boltstore.WithOpenTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	skey, _, _ := audit.GenerateKey("hale-test")
	signer, _ := audit.NewSigner(skey)
	log, err := audit.New(storage.Scope(st, func(tx storage.Tx) audit.Tx { return tx }), signer)
	if err != nil {
		t.Fatal(err)
	}
	db := storage.Scope(st, func(tx storage.Tx) SessionTx { return tx })
	cfg := OIDCConfig{Issuer: m.Issuer(), ClientID: m.ClientID, ClientSecretFile: "unused", Roles: map[string]string{"hale-desk": "it"}}
	quiet := slog.New(slog.DiscardHandler)
	var cs [2]*Console
	for i := range cs {
		opts := []Option{WithLogger(quiet), WithSessionDB(db), WithOIDC(cfg, m.ClientSecret, "https://hale.example/console/oidc/callback", nil)}
		if key != nil {
			opts = append(opts, WithSealKey(key))
		}
		cs[i], err = New(Deps{Tokens: memTokens{}, Auditor: httpapi.Auditor{Log: log, Logger: quiet},
			Roles: func(string) ([]tokens.Role, bool) { return []tokens.Role{tokens.RoleIT}, true }}, opts...)
		if err != nil {
			t.Fatal(err)
		}
	}
	return cs[0], cs[1], m
}

// startOIDC starts a sign-in on c and takes it through the provider: it returns the callback
// the provider sends the browser to and the browser's sign-in cookie.
func startOIDC(t *testing.T, c *Console, m *mockoidc.MockOIDC) (*url.URL, *http.Cookie) {
	t.Helper()
	m.QueueUser(&mockoidc.MockUser{Subject: "u-dana", Email: "dana@example.org", EmailVerified: true, Groups: []string{"hale-desk"}})
	w := httptest.NewRecorder()
	c.oidcStart(w, httptest.NewRequest("GET", "/console/oidc/login", nil))
	var ck *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == oidcCookie {
			ck = k
		}
	}
	to := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || ck == nil || to == "" {
		t.Fatalf("OIDC start: %d, cookie %v, to %q", w.Code, ck, to)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(to)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || cb.Query().Get("code") == "" {
		t.Fatalf("the provider answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return cb, ck
}

// callback delivers the provider's answer to c in the browser holding ck.
func callback(c *Console, cb *url.URL, ck *http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/console/oidc/callback?"+cb.RawQuery, nil)
	r.AddCookie(ck)
	w := httptest.NewRecorder()
	c.oidcCallback(w, r)
	return w
}

func sessionCookie(w *httptest.ResponseRecorder) *http.Cookie {
	for _, k := range w.Result().Cookies() {
		if k.Name == CookieName && k.Value != "" {
			return k
		}
	}
	return nil
}

func TestOIDCCallbackReachesAnotherServer(t *testing.T) {
	key, err := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	a, b, m := oidcCluster(t, key)
	cb, ck := startOIDC(t, a, m)
	w := callback(b, cb, ck) // the provider's redirect lands on B
	sc := sessionCookie(w)
	if w.Code != http.StatusOK || sc == nil {
		t.Fatalf("callback on B: %d %s", w.Code, w.Body)
	}
	if ss, why := open(a, sc); ss == nil || ss.who.Person != "dana@example.org" || ss.via != "oidc" {
		t.Fatalf("A does not take the session B opened: %v %q", ss, why)
	}

	// The cookie is bound to its own sign-in: another sign-in's state, a forged or a cut
	// cookie, and a cookie sealed with another key open nothing.
	cb2, ck2 := startOIDC(t, a, m)
	if w := callback(b, cb2, ck); w.Code != http.StatusBadRequest || sessionCookie(w) != nil {
		t.Fatalf("a callback with another sign-in's cookie: %d", w.Code)
	}
	bad := *ck2
	bad.Value = ck2.Value[:len(ck2.Value)-4] + "AAAA"
	if w := callback(b, cb2, &bad); w.Code != http.StatusBadRequest {
		t.Fatalf("a callback with a forged cookie: %d", w.Code)
	}
	other, _ := seal.New(bytes.Repeat([]byte{8}, seal.KeySize))
	b.sealKey = other
	if w := callback(b, cb2, ck2); w.Code != http.StatusBadRequest {
		t.Fatalf("a callback with a cookie sealed by another key: %d", w.Code)
	}
}

func TestOIDCCallbackWithoutSealKeyNeedsTheSameServer(t *testing.T) {
	a, b, m := oidcCluster(t, nil)
	cb, ck := startOIDC(t, a, m)
	if w := callback(b, cb, ck); w.Code != http.StatusBadRequest {
		t.Fatalf("callback on B without a seal key: %d, want 400 (the sign-in waits in A's memory)", w.Code)
	}
	cb, ck = startOIDC(t, a, m)
	if w := callback(a, cb, ck); w.Code != http.StatusOK || sessionCookie(w) == nil {
		t.Fatalf("callback on A: %d", w.Code)
	}
}

// The sealed sign-in cookie is opened from whatever a browser sends: nothing crashes, and only
// what this key sealed, for this state, opens.
func FuzzOpenPending(f *testing.F) {
	key, _ := seal.New(bytes.Repeat([]byte{7}, seal.KeySize))
	c := &Console{sealKey: key}
	good := c.sealPending("st", &pendingLogin{nonce: "n", verifier: "v", at: t0})
	f.Add("st", good)
	f.Add("st", "")
	f.Add("", good)
	f.Add("st", "!!!")
	f.Fuzz(func(t *testing.T, state, value string) {
		p := c.openPending(state, &http.Cookie{Name: oidcCookie, Value: value})
		if p != nil && (state != "st" || p.nonce != "n" || p.verifier != "v") {
			t.Fatalf("opened %q for state %q: %+v", value, state, p)
		}
	})
}
