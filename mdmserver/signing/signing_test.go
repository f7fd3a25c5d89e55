package signing_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/boltstore"
	"github.com/halemdm/hale/posture"
)

func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

func sealKey(tb testing.TB, b byte) *seal.Key {
	tb.Helper()
	k, err := seal.New(bytes.Repeat([]byte{b}, seal.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func openDB(tb testing.TB, path string) *boltstore.Store {
	tb.Helper()
	db, err := boltstore.Open(path, boltstore.WithOpenTimeout(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// newDB returns a store in a temp dir, closed at the end of the test.
func newDB(tb testing.TB) (*boltstore.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "hale.db")
	db := openDB(tb, path)
	tb.Cleanup(func() { db.Close() })
	return db, path
}

// keys narrows st to the keyset's repository, as the server does.
func keys(st storage.Store) signing.Store {
	return storage.Scope(st, func(tx storage.Tx) signing.Tx { return tx })
}

// open opens the keyset on db.
func open(db storage.Store, sk *seal.Key, opts ...signing.Option) (*signing.Keyset, error) {
	return signing.Open(context.Background(), keys(db), sk, opts...)
}

func mustOpen(tb testing.TB, db storage.Store, sk *seal.Key, opts ...signing.Option) *signing.Keyset {
	tb.Helper()
	k, err := open(db, sk, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return k
}

func jwks(tb testing.TB, k *signing.Keyset) jose.JSONWebKeySet {
	tb.Helper()
	b, err := k.JWKS(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		tb.Fatalf("JWKS does not parse: %v\n%s", err, b)
	}
	return set
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// verify checks tok against set as a relying party would: ES256 only, key chosen by kid, typ
// required. It returns the kid and the payload.
func verify(tb testing.TB, set jose.JSONWebKeySet, tok, wantTyp string) (string, []byte) {
	tb.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		tb.Fatalf("ParseSigned: %v", err)
	}
	if len(jws.Signatures) != 1 {
		tb.Fatalf("%d signatures, want 1", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if h.KeyID == "" {
		tb.Fatal("no kid header")
	}
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != wantTyp {
		tb.Fatalf("typ header %q, want %q", typ, wantTyp)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		tb.Fatalf("kid %q: %d keys in JWKS %v", h.KeyID, len(keys), kids(set))
	}
	payload, err := jws.Verify(&keys[0])
	if err != nil {
		tb.Fatalf("Verify with kid %q: %v", h.KeyID, err)
	}
	return h.KeyID, payload
}

// verifyFails reports whether tok does not verify with any key in set.
func verifyFails(tb testing.TB, set jose.JSONWebKeySet, tok string) bool {
	tb.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		tb.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Protected.KeyID)
	for i := range keys {
		if _, err := jws.Verify(&keys[i]); err == nil {
			return false
		}
	}
	return true
}

func sign(tb testing.TB, k *signing.Keyset, typ string, claims any) string {
	tb.Helper()
	tok, err := k.Sign(typ, claims)
	if err != nil {
		tb.Fatalf("Sign: %v", err)
	}
	return tok
}

func tokenClaims(jti string) posture.TokenClaims {
	yes := true
	return posture.TokenClaims{
		Issuer: "https://hale.example", Subject: "dev-1", Audience: posture.TokenAudience,
		IssuedAt: 1000, NotBefore: 1000, Expiry: 1900, ID: jti,
		Confirm: posture.Confirm{X5tS256: "abc"},
		Device:  posture.DeviceAt{Compliant: true, Platform: "ios", Encrypted: &yes},
	}
}

func TestSignVerify(t *testing.T) {
	db, _ := newDB(t)
	k := mustOpen(t, db, sealKey(t, 1))
	set := jwks(t, k)
	if len(set.Keys) != 1 {
		t.Fatalf("new keyset publishes %d keys, want 1", len(set.Keys))
	}

	want := tokenClaims("jti-1")
	tok := sign(t, k, posture.TokenType, want)
	kid, payload := verify(t, set, tok, posture.TokenType)
	var got posture.TokenClaims
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != want.ID || got.Subject != want.Subject || got.Device.Encrypted == nil || !*got.Device.Encrypted {
		t.Fatalf("claims round trip: got %+v", got)
	}

	// The kid is the RFC 7638 thumbprint of the published key.
	pub := set.Keys[0]
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(tp); kid != want || pub.KeyID != want {
		t.Fatalf("kid %q, JWKS kid %q, thumbprint %q", kid, pub.KeyID, want)
	}

	// SETs are signed by the same key with their own typ, so neither is taken for the other.
	setKid, _ := verify(t, set, sign(t, k, posture.SETType, posture.SETClaims{ID: "set-1"}), posture.SETType)
	if setKid != kid {
		t.Fatalf("SET signed with %q, token with %q", setKid, kid)
	}
}

func TestJWKSShape(t *testing.T) {
	db, _ := newDB(t)
	k := mustOpen(t, db, sealKey(t, 1))
	b, err := k.JWKS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Keys) != 1 {
		t.Fatalf("%d keys", len(raw.Keys))
	}
	m := raw.Keys[0]
	for field, want := range map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"} {
		if m[field] != want {
			t.Errorf("%s = %v, want %q", field, m[field], want)
		}
	}
	for _, field := range []string{"kid", "x", "y"} {
		if s, _ := m[field].(string); s == "" {
			t.Errorf("%s missing", field)
		}
	}
	if _, ok := m["d"]; ok {
		t.Fatal("JWKS publishes the private key")
	}
	// Callers may scribble on what JWKS returns without changing what is served.
	b[0] = 'X'
	if b2, _ := k.JWKS(context.Background()); b2[0] != '{' {
		t.Fatal("JWKS returned the shared cache")
	}
}

func TestReopenKeepsKey(t *testing.T) {
	db, path := newDB(t)
	sk := sealKey(t, 1)
	k := mustOpen(t, db, sk)
	tok := sign(t, k, posture.TokenType, tokenClaims("a"))
	kid1, _ := verify(t, jwks(t, k), tok, posture.TokenType)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := openDB(t, path)
	defer db2.Close()
	k2 := mustOpen(t, db2, sk)
	set := jwks(t, k2)
	if got := kids(set); len(got) != 1 || got[0] != kid1 {
		t.Fatalf("after reopen JWKS kids %v, want [%s]", got, kid1)
	}
	verify(t, set, tok, posture.TokenType)
	kid2, _ := verify(t, set, sign(t, k2, posture.TokenType, tokenClaims("b")), posture.TokenType)
	if kid2 != kid1 {
		t.Fatalf("reopened keyset signs with %q, want %q", kid2, kid1)
	}
}

func TestRotateOverlap(t *testing.T) {
	db, path := newDB(t)
	sk := sealKey(t, 1)
	c := newClock()
	const every, overlap = 24 * time.Hour, 2 * time.Hour
	k := mustOpen(t, db, sk, signing.WithClock(c.Now), signing.WithRotation(every, overlap))
	ctx := context.Background()

	old := sign(t, k, posture.TokenType, tokenClaims("old"))
	oldKid, _ := verify(t, jwks(t, k), old, posture.TokenType)

	c.Advance(time.Hour)
	if err := k.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	set := jwks(t, k)
	newTok := sign(t, k, posture.TokenType, tokenClaims("new"))
	newKid, _ := verify(t, set, newTok, posture.TokenType)
	if newKid == oldKid {
		t.Fatal("Rotate did not change the signing key")
	}
	if got := kids(set); len(got) != 2 || got[0] != newKid || got[1] != oldKid {
		t.Fatalf("JWKS kids %v, want [%s %s]", got, newKid, oldKid)
	}
	verify(t, set, old, posture.TokenType)

	// Still published just before the overlap ends, across a restart too.
	c.Advance(overlap - time.Second)
	verify(t, jwks(t, k), old, posture.TokenType)
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	k = mustOpen(t, db, sk, signing.WithClock(c.Now), signing.WithRotation(every, overlap))
	verify(t, jwks(t, k), old, posture.TokenType)
	verify(t, jwks(t, k), sign(t, k, posture.TokenType, tokenClaims("x")), posture.TokenType)

	// Gone once the overlap has passed, even before RotateIfDue prunes the store.
	c.Advance(time.Second)
	set = jwks(t, k)
	if got := kids(set); len(got) != 1 || got[0] != newKid {
		t.Fatalf("after overlap JWKS kids %v, want [%s]", got, newKid)
	}
	if !verifyFails(t, set, old) {
		t.Fatal("token of an expired key still verifies")
	}
	verify(t, set, newTok, posture.TokenType)
	if n := storedCount(t, db); n != 2 {
		t.Fatalf("store holds %d keys before pruning, want 2", n)
	}
	rotated, err := k.RotateIfDue(ctx)
	if err != nil || rotated {
		t.Fatalf("RotateIfDue = %v, %v; want no rotation", rotated, err)
	}
	if n := storedCount(t, db); n != 1 {
		t.Fatalf("store holds %d keys after pruning, want 1", n)
	}
}

func storedCount(tb testing.TB, db storage.Store) int {
	tb.Helper()
	n := 0
	if err := db.View(context.Background(), func(tx storage.Tx) error {
		stored, err := tx.Signing().Keys(context.Background())
		n = len(stored)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestRotateIfDue(t *testing.T) {
	db, path := newDB(t)
	c := newClock()
	sk := sealKey(t, 1)
	k := mustOpen(t, db, sk, signing.WithClock(c.Now), signing.WithRotation(10*time.Hour, time.Hour))
	ctx := context.Background()
	kid0 := kids(jwks(t, k))[0]

	c.Advance(10*time.Hour - time.Second)
	if rotated, err := k.RotateIfDue(ctx); err != nil || rotated {
		t.Fatalf("RotateIfDue before due = %v, %v", rotated, err)
	}
	c.Advance(time.Second)
	if rotated, err := k.RotateIfDue(ctx); err != nil || !rotated {
		t.Fatalf("RotateIfDue when due = %v, %v", rotated, err)
	}
	got := kids(jwks(t, k))
	if len(got) != 2 || got[0] == kid0 || got[1] != kid0 {
		t.Fatalf("JWKS kids %v after scheduled rotation (old %s)", got, kid0)
	}
	// The new key's age starts at the rotation: not due again right away, also after a restart.
	if rotated, err := k.RotateIfDue(ctx); err != nil || rotated {
		t.Fatalf("RotateIfDue right after rotation = %v, %v", rotated, err)
	}
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	k = mustOpen(t, db, sk, signing.WithClock(c.Now), signing.WithRotation(10*time.Hour, time.Hour))
	if rotated, err := k.RotateIfDue(ctx); err != nil || rotated {
		t.Fatalf("RotateIfDue after reopen = %v, %v", rotated, err)
	}
	if kid := kids(jwks(t, k))[0]; kid != got[0] {
		t.Fatalf("reopen signs with %s, want %s", kid, got[0])
	}
}

func TestOptionsValidated(t *testing.T) {
	db, _ := newDB(t)
	for _, o := range []signing.Option{signing.WithRotation(0, time.Hour), signing.WithRotation(time.Hour, -time.Second)} {
		if _, err := open(db, sealKey(t, 1), o); err == nil {
			t.Error("Open accepted an invalid rotation")
		}
	}
	if _, err := open(db, nil); err == nil {
		t.Error("Open accepted a nil seal key")
	}
	if n := storedCount(t, db); n != 0 {
		t.Fatalf("failed Opens stored %d keys", n)
	}
}

func TestSignRejects(t *testing.T) {
	db, _ := newDB(t)
	k := mustOpen(t, db, sealKey(t, 1))
	if _, err := k.Sign("", tokenClaims("a")); err == nil {
		t.Error("Sign accepted an empty typ")
	}
	if _, err := k.Sign(posture.TokenType, func() {}); err == nil {
		t.Error("Sign accepted claims that do not marshal")
	}
	// Another typ still gets kid and typ headers.
	verify(t, jwks(t, k), sign(t, k, "example+jwt", map[string]int{"a": 1}), "example+jwt")
}

func TestHandler(t *testing.T) {
	db, _ := newDB(t)
	c := newClock()
	k := mustOpen(t, db, sealKey(t, 1), signing.WithClock(c.Now), signing.WithRotation(time.Hour, time.Hour))
	srv := httptest.NewServer(k.Handler())
	defer srv.Close()

	get := func() []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + "/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
			t.Fatalf("Content-Type %q", ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "max-age=300" {
			t.Fatalf("Cache-Control %q", cc)
		}
		return buf.Bytes()
	}

	body := get()
	want, _ := k.JWKS(context.Background())
	if !bytes.Equal(body, want) {
		t.Fatalf("handler body %s, JWKS %s", body, want)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	verify(t, set, sign(t, k, posture.SETType, posture.SETClaims{ID: "s"}), posture.SETType)

	// Rotation and expiry show in what is served.
	if err := k.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(get(), &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("after rotation served %d keys (%v)", len(set.Keys), err)
	}
	c.Advance(time.Hour)
	if err := json.Unmarshal(get(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("after overlap served %d keys (%v)", len(set.Keys), err)
	}

	resp, err := http.Post(srv.URL+"/jwks.json", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Fatalf("POST: status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestConcurrentSignDuringRotate is for -race: signers never see a half-rotated keyset, and
// every token they get verifies against the published keys.
func TestConcurrentSignDuringRotate(t *testing.T) {
	db, _ := newDB(t)
	k := mustOpen(t, db, sealKey(t, 1))
	ctx := context.Background()

	const workers, perWorker, rotations = 8, 40, 5
	toks := make(chan string, workers*perWorker)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := 0; i < perWorker; i++ {
				typ := posture.TokenType
				if i%2 == 1 {
					typ = posture.SETType
				}
				tok, err := k.Sign(typ, tokenClaims("c"))
				if err != nil {
					t.Error(err)
					return
				}
				toks <- tok
			}
		})
	}
	wg.Go(func() {
		for i := 0; i < rotations; i++ {
			if err := k.Rotate(ctx); err != nil {
				t.Error(err)
				return
			}
			if _, err := k.JWKS(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	close(toks)

	set := jwks(t, k)
	if len(set.Keys) != rotations+1 {
		t.Fatalf("JWKS has %d keys after %d rotations within the overlap", len(set.Keys), rotations)
	}
	for tok := range toks {
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		verify(t, set, tok, jws.Signatures[0].Protected.ExtraHeaders["typ"].(string))
	}
}

func TestRunRotates(t *testing.T) {
	db, _ := newDB(t)
	// Real clock: a 20ms rotation period makes Run check every 2ms.
	k := mustOpen(t, db, sealKey(t, 1), signing.WithRotation(20*time.Millisecond, time.Hour))
	first := kids(jwks(t, k))[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()

	deadline := time.Now().Add(5 * time.Second)
	for len(jwks(t, k).Keys) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not rotate the key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if kids(jwks(t, k))[0] == first {
		t.Fatal("current key unchanged after Run rotated")
	}
}

func BenchmarkSign(b *testing.B) {
	db, _ := newDB(b)
	k := mustOpen(b, db, sealKey(b, 1))
	claims := tokenClaims("bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.Sign(posture.TokenType, claims); err != nil {
				b.Fatal(err)
			}
		}
	})
}
