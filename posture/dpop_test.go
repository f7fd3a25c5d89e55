package posture_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/halemdm/hale/posture"
	"github.com/halemdm/hale/posture/grpcgate"
)

// appKey is a messaging app instance's key, signing as the Secure Enclave does (ASN.1 DER).
func appKey(t *testing.T) (*ecdsa.PrivateKey, posture.SignFunc, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := posture.KeyThumbprint(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, k, d) }, jkt
}

func appClaims(device, jkt string, iat time.Time) posture.TokenClaims {
	c := posture.TokenClaims{
		Issuer: issuer, Subject: device, Audience: posture.TokenAudience,
		IssuedAt: iat.Unix(), NotBefore: iat.Unix(), Expiry: iat.Add(10 * time.Minute).Unix(), ID: "jti-app-" + device,
		Confirm: posture.Confirm{JKT: jkt},
		Device:  posture.DeviceAt{Compliant: true, Platform: "ios", OSVersion: "19.1"},
	}
	c.AppInstance = "ai_1"
	return c
}

func TestVerifyWithProof(t *testing.T) {
	key := newSigner(t, "k1")
	c := newClock()
	v := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithIssuer(issuer), posture.WithVerifierClock(c.Now))
	ctx := context.Background()
	k, sign, jkt := appKey(t)
	tok := key.token(t, appClaims("d1", jkt, t0.Add(-time.Minute)))
	const url = "https://chat.example.org/sessions"
	proof := func(k *ecdsa.PrivateKey, sign posture.SignFunc, method, u, token, jti string, iat time.Time) string {
		p, err := posture.NewProof(&k.PublicKey, sign, method, u, token, jti, iat)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := proof(k, sign, "POST", url, tok, "j1", t0)
	got, err := v.VerifyWithProof(ctx, tok, good, "POST", url+"?x=1")
	if err != nil || got.Subject != "d1" || got.AppInstance != "ai_1" {
		t.Fatalf("valid token and proof: %+v, %v", got, err)
	}
	other, otherSign, _ := appKey(t)
	cert := deviceCert(t, "d1")
	certTok := key.token(t, claims("d1", cert, t0.Add(-time.Minute)))
	cases := []struct {
		name, token, proof, method, url string
		want                            error
	}{
		{"replayed proof", tok, good, "POST", url, posture.ErrProof},
		{"no proof", tok, "", "POST", url, posture.ErrProof},
		{"another key's proof", tok, proof(other, otherSign, "POST", url, tok, "j2", t0), "POST", url, posture.ErrProof},
		{"another method", tok, proof(k, sign, "GET", url, tok, "j3", t0), "POST", url, posture.ErrProof},
		{"another URL", tok, proof(k, sign, "POST", "https://chat.example.org/admin", tok, "j4", t0), "POST", url, posture.ErrProof},
		{"another token's hash", tok, proof(k, sign, "POST", url, tok+"x", "j5", t0), "POST", url, posture.ErrProof},
		{"stale proof", tok, proof(k, sign, "POST", url, tok, "j6", t0.Add(-2*time.Minute)), "POST", url, posture.ErrProof},
		{"proof from the future", tok, proof(k, sign, "POST", url, tok, "j7", t0.Add(2*time.Minute)), "POST", url, posture.ErrProof},
		{"certificate-bound token with a proof", certTok, proof(k, sign, "POST", url, certTok, "j8", t0), "POST", url, posture.ErrNotKeyBound},
		{"garbage proof", tok, "a.b.c", "POST", url, posture.ErrProof},
	}
	for _, c := range cases {
		if _, err := v.VerifyWithProof(ctx, c.token, c.proof, c.method, c.url); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A key-bound token shown over mutual TLS, without its proof, is refused.
	if _, err := v.Verify(ctx, tok, cert); !errors.Is(err, posture.ErrWrongBinding) {
		t.Fatalf("key-bound token as a certificate-bound one: %v", err)
	}
	// A revocation of the device covers its app tokens too.
	v.Revoke("d1", t0)
	if _, err := v.VerifyWithProof(ctx, tok, proof(k, sign, "POST", url, tok, "j9", t0), "POST", url); !errors.Is(err, posture.ErrRevoked) {
		t.Fatalf("after revocation: %v", err)
	}
}

// The middleware takes "Authorization: DPoP <token>" with a DPoP header, checks the proof
// against the backend's public URL, and lets the session in.
func TestMiddlewareDPoP(t *testing.T) {
	key := newSigner(t, "k1")
	c := newClock()
	v := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithIssuer(issuer), posture.WithVerifierClock(c.Now))
	g := &posture.Gate{Verifier: v, PublicURL: "https://chat.example.org"}
	var seen posture.Access
	h := posture.Middleware(g)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = posture.FromContext(r.Context())
	}))
	k, sign, jkt := appKey(t)
	tok := key.token(t, appClaims("d1", jkt, t0.Add(-time.Minute)))
	do := func(jti, u string) int {
		proof, err := posture.NewProof(&k.PublicKey, sign, "POST", u, tok, jti, t0)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "http://10.0.0.5:8080/sessions", strings.NewReader("{}"))
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set(posture.DPoPHeader, proof)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := do("m1", "https://chat.example.org/sessions"); code != 200 || seen.DeviceID != "d1" || seen.Claims.AppInstance != "ai_1" {
		t.Fatalf("session: %d %+v", code, seen)
	}
	if code := do("m2", "http://10.0.0.5:8080/sessions"); code != 403 {
		t.Fatalf("proof for the internal URL: %d", code)
	}
}

// FuzzVerifyWithProof feeds arbitrary proofs: refused with ErrProof, never a panic.
func FuzzVerifyWithProof(f *testing.F) {
	key := newSigner(f, "k1")
	c := newClock()
	v := posture.NewVerifier(posture.StaticJWKS(jwks(f, key)), posture.WithIssuer(issuer), posture.WithVerifierClock(c.Now))
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	jkt, _ := posture.KeyThumbprint(&k.PublicKey)
	tok := key.token(f, appClaims("d1", jkt, t0.Add(-time.Minute)))
	seed, err := posture.NewProof(&k.PublicKey, func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, k, d) },
		"POST", "https://chat.example.org/sessions", tok, "seed", t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add("eyJ0eXAiOiJkcG9wK2p3dCJ9..")
	f.Fuzz(func(t *testing.T, proof string) {
		if _, err := v.VerifyWithProof(context.Background(), tok, proof, "GET", "https://chat.example.org/other"); !errors.Is(err, posture.ErrProof) {
			t.Fatalf("fuzzed proof: %v", err)
		}
	})
}

// gRPC: "authorization: DPoP <token>" with a "dpop" proof for POST and the public URL followed by
// the full method name.
func TestGRPCDPoP(t *testing.T) {
	key := newSigner(t, "k1")
	c := newClock()
	v := posture.NewVerifier(posture.StaticJWKS(jwks(t, key)), posture.WithIssuer(issuer), posture.WithVerifierClock(c.Now))
	intercept := grpcgate.UnaryServerInterceptor(&posture.Gate{Verifier: v, PublicURL: "https://chat.example.org"})
	k, sign, jkt := appKey(t)
	tok := key.token(t, appClaims("d1", jkt, t0.Add(-time.Minute)))
	call := func(jti, u string) error {
		proof, err := posture.NewProof(&k.PublicKey, sign, "POST", u, tok, jti, t0)
		if err != nil {
			t.Fatal(err)
		}
		ctx := grpcContext(nil, "authorization", "DPoP "+tok, grpcgate.DPoPMetadata, proof)
		_, err = intercept(ctx, "req", &grpc.UnaryServerInfo{FullMethod: "/chat.Chat/Open"},
			func(ctx context.Context, req any) (any, error) { return "ok", nil })
		return err
	}
	if err := call("g1", "https://chat.example.org/chat.Chat/Open"); err != nil {
		t.Fatalf("DPoP call: %v", err)
	}
	if err := call("g2", "https://chat.example.org/chat.Chat/Other"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("proof for another method: %v", err)
	}
}
