package posture_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/posture"
)

// unsigned builds a compact JWS by hand, for algorithms the test signer refuses to use.
func unsigned(t *testing.T, header map[string]any, claims any, sign func(input string) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign(input))
}

func TestVerify(t *testing.T) {
	key := newSigner(t, "k1")
	c := newClock()
	cert := deviceCert(t, "d1")
	v := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithIssuer(issuer), posture.WithVerifierClock(c.Now))
	ctx := context.Background()
	valid := claims("d1", cert, t0.Add(-time.Minute))

	got, err := v.Verify(ctx, key.token(t, valid), cert)
	if err != nil || got.Subject != "d1" || !got.Device.Compliant || got.Device.OSVersion != "19.1" {
		t.Fatalf("valid token: %+v, %v", got, err)
	}

	with := func(f func(*posture.TokenClaims)) posture.TokenClaims {
		c := valid
		f(&c)
		return c
	}
	jwkJSON := jwks(t, key)
	cases := []struct {
		name  string
		token string
		peer  *x509.Certificate
		want  error
	}{
		{"forged signature", newSigner(t, "k1").token(t, valid), cert, posture.ErrBadSignature},
		{"tampered claims", func() string {
			parts := strings.Split(key.token(t, valid), ".")
			c, _ := json.Marshal(with(func(c *posture.TokenClaims) { c.Subject = "d2" }))
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(c) + "." + parts[2]
		}(), cert, posture.ErrBadSignature},
		{"expired", key.token(t, with(func(c *posture.TokenClaims) {
			c.IssuedAt, c.NotBefore, c.Expiry = t0.Add(-20*time.Minute).Unix(), t0.Add(-20*time.Minute).Unix(), t0.Add(-31*time.Second).Unix()
		})), cert, posture.ErrExpired},
		{"nbf in the future", key.token(t, with(func(c *posture.TokenClaims) { c.NotBefore = t0.Add(time.Minute).Unix() })), cert, posture.ErrNotYetValid},
		{"iat in the future", key.token(t, with(func(c *posture.TokenClaims) {
			c.IssuedAt, c.NotBefore = t0.Add(time.Minute).Unix(), 0
		})), cert, posture.ErrNotYetValid},
		{"wrong audience", key.token(t, with(func(c *posture.TokenClaims) { c.Audience = "someone-else" })), cert, posture.ErrWrongAudience},
		{"wrong issuer", key.token(t, with(func(c *posture.TokenClaims) { c.Issuer = "https://evil.test" })), cert, posture.ErrWrongIssuer},
		{"lifetime too long", key.token(t, with(func(c *posture.TokenClaims) { c.Expiry = c.IssuedAt + 3601 })), cert, posture.ErrMalformed},
		{"no exp", key.token(t, with(func(c *posture.TokenClaims) { c.Expiry = 0 })), cert, posture.ErrMalformed},
		{"no subject", key.token(t, with(func(c *posture.TokenClaims) { c.Subject = "" })), cert, posture.ErrMalformed},
		{"alg none", unsigned(t, map[string]any{"alg": "none", "typ": posture.TokenType, "kid": "k1"}, valid,
			func(string) []byte { return nil }), cert, posture.ErrUnsupportedAlgorithm},
		{"HS256 keyed with the public key", unsigned(t, map[string]any{"alg": "HS256", "typ": posture.TokenType, "kid": "k1"}, valid,
			func(in string) []byte { m := hmac.New(sha256.New, jwkJSON); m.Write([]byte(in)); return m.Sum(nil) }), cert, posture.ErrUnsupportedAlgorithm},
		{"unknown kid", newSigner(t, "k9").token(t, valid), cert, posture.ErrUnknownKey},
		{"SET shown as a token", key.sign(t, posture.SETType, valid), cert, posture.ErrWrongType},
		{"no typ", key.sign(t, "", valid), cert, posture.ErrWrongType},
		{"bound to another certificate", key.token(t, valid), deviceCert(t, "d2"), posture.ErrWrongBinding},
		{"no binding", key.token(t, with(func(c *posture.TokenClaims) { c.Confirm.X5tS256 = "" })), cert, posture.ErrWrongBinding},
		{"no peer certificate", key.token(t, valid), nil, posture.ErrNoPeerCertificate},
		{"garbage", "not.a.token", cert, posture.ErrMalformed},
		{"JSON serialization", `{"payload":"e30","protected":"e30","signature":""}`, cert, posture.ErrMalformed},
		{"oversized", strings.Repeat("a", posture.MaxTokenBytes+1), cert, posture.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(ctx, tc.token, tc.peer)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %+v, %v; want %v", got, err, tc.want)
			}
			wantReason := posture.ReasonInvalidToken
			if tc.want == posture.ErrNoPeerCertificate {
				wantReason = posture.ReasonUnknownCert
			}
			if r := posture.ReasonCode(err); r != wantReason {
				t.Fatalf("ReasonCode = %s, want %s", r, wantReason)
			}
		})
	}

	t.Run("leeway", func(t *testing.T) {
		c := with(func(c *posture.TokenClaims) { c.Expiry = t0.Add(-29 * time.Second).Unix() })
		if _, err := v.Verify(ctx, key.token(t, c), cert); err != nil {
			t.Fatalf("a token expired 29s ago was refused with a 30s leeway: %v", err)
		}
		strict := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithLeeway(0), posture.WithVerifierClock(func() time.Time { return t0 }))
		if _, err := strict.Verify(ctx, key.token(t, c), cert); !errors.Is(err, posture.ErrExpired) {
			t.Fatalf("without leeway: %v", err)
		}
	})

	t.Run("no issuer configured accepts any issuer", func(t *testing.T) {
		any := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithVerifierClock(c.Now))
		if _, err := any.Verify(ctx, key.token(t, with(func(c *posture.TokenClaims) { c.Issuer = "x" })), cert); err != nil {
			t.Fatal(err)
		}
	})
}

func TestVerifierRevoke(t *testing.T) {
	key := newSigner(t, "k1")
	c := newClock()
	cert := deviceCert(t, "d1")
	v := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithVerifierClock(c.Now))
	ctx := context.Background()
	old := key.token(t, claims("d1", cert, t0.Add(-time.Minute)))
	if _, err := v.Verify(ctx, old, cert); err != nil {
		t.Fatal(err)
	}

	v.Revoke("d1", t0)
	v.Revoke("d1", t0.Add(-time.Hour)) // an older event does not shorten the revocation
	if _, err := v.Verify(ctx, old, cert); !errors.Is(err, posture.ErrRevoked) || posture.ReasonCode(err) != posture.ReasonTokenRevoked {
		t.Fatalf("replayed after revoke: %v", err)
	}
	sameSecond := key.token(t, claims("d1", cert, t0))
	if _, err := v.Verify(ctx, sameSecond, cert); !errors.Is(err, posture.ErrRevoked) {
		t.Fatalf("token issued in the second of the revocation: %v", err)
	}
	c.Advance(2 * time.Second)
	if _, err := v.Verify(ctx, key.token(t, claims("d1", cert, c.Now())), cert); err != nil {
		t.Fatalf("token issued after the revocation: %v", err)
	}
	other := deviceCert(t, "d2")
	if _, err := v.Verify(ctx, key.token(t, claims("d2", other, t0.Add(-time.Minute))), other); err != nil {
		t.Fatalf("another device's token: %v", err)
	}
}

// VerifyUnbound checks everything but the certificate binding.
func TestVerifyUnbound(t *testing.T) {
	key := newSigner(t, "k1")
	c := newClock()
	cert := deviceCert(t, "d1")
	v := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithVerifierClock(c.Now))
	ctx := context.Background()
	tok := key.token(t, claims("d1", cert, t0))
	if got, err := v.VerifyUnbound(ctx, tok); err != nil || got.Subject != "d1" {
		t.Fatalf("VerifyUnbound = %+v, %v", got, err)
	}
	if _, err := v.Verify(ctx, tok, nil); !errors.Is(err, posture.ErrNoPeerCertificate) {
		t.Fatalf("Verify without a peer: %v", err)
	}
	c.Advance(time.Hour)
	if _, err := v.VerifyUnbound(ctx, tok); !errors.Is(err, posture.ErrExpired) {
		t.Fatalf("expired token, unbound: %v", err)
	}
	if _, err := v.VerifyUnbound(ctx, tok[:len(tok)-4]+"AAAA"); err == nil {
		t.Fatal("forged signature accepted unbound")
	}
}

// A key set whose kid the server rotated is fetched again, at most once per 30 seconds.
func TestRemoteJWKSRotation(t *testing.T) {
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	h := newFakeHale(t, jwks(t, k1))
	c := newClock()
	cl := newClient(t, h, c)
	keys := cl.Keys(posture.WithJWKSClock(c.Now))
	v := posture.NewVerifier(keys, posture.WithVerifierClock(c.Now))
	cert := deviceCert(t, "d1")
	ctx := context.Background()
	verify := func(s *signer) error {
		_, err := v.Verify(ctx, s.token(t, claims("d1", cert, c.Now())), cert)
		return err
	}
	fetches := func(want int64) {
		t.Helper()
		if got := h.jwksHits.Load(); got != want {
			t.Fatalf("%d key set fetches, want %d", got, want)
		}
	}

	if err := verify(k1); err != nil {
		t.Fatal(err)
	}
	if err := verify(k1); err != nil {
		t.Fatal(err)
	}
	fetches(1)

	h.setKeys(jwks(t, k1, k2))
	c.Advance(10 * time.Second)
	if err := verify(k2); !errors.Is(err, posture.ErrUnknownKey) {
		t.Fatalf("refetched within 30s of the last fetch: %v", err)
	}
	fetches(1)
	c.Advance(25 * time.Second)
	if err := verify(k2); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	fetches(2)
	for range 5 { // a flood of tokens with unknown kids costs at most one fetch per 30s
		if err := verify(newSigner(t, "forged")); !errors.Is(err, posture.ErrUnknownKey) {
			t.Fatal(err)
		}
	}
	fetches(2)

	// Past the TTL the set is fetched again; if that fails the last good set keeps serving.
	h.setMode("jwks-500")
	c.Advance(posture.DefaultJWKSCacheTTL)
	if err := verify(k2); err != nil {
		t.Fatalf("stale keys while the server is down: %v", err)
	}
	fetches(3)
	if err := verify(k2); err != nil {
		t.Fatal(err)
	}
	fetches(3) // no retry within 30s of a failure
	c.Advance(25 * time.Hour)
	if err := verify(k2); !errors.Is(err, posture.ErrKeysUnavailable) || posture.ReasonCode(err) != posture.ReasonUnreachable {
		t.Fatalf("day-old keys with the server down: %v", err)
	}
}

func TestRemoteJWKSRefusesBadSets(t *testing.T) {
	h := newFakeHale(t, []byte(`{"not":"a key set"}`))
	cl := newClient(t, h, newClock())
	if _, err := cl.Keys().JWKS(context.Background()); err == nil {
		t.Fatal("a document without keys was taken for a key set")
	}
	h2 := newFakeHale(t, []byte(strings.Repeat(" ", 1<<20+1)+`{"keys":[]}`))
	if _, err := newClient(t, h2, newClock()).Keys().JWKS(context.Background()); err == nil {
		t.Fatal("an oversized key set was accepted")
	}
}
