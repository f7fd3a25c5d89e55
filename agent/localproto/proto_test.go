package localproto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/posture"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signer(k *ecdsa.PrivateKey) SignFunc {
	return func(d []byte) ([]byte, error) { return ecdsa.SignASN1(rand.Reader, k, d) }
}

// The thumbprint the agent names the key by is the one posture verifies DPoP proofs against
// (go-jose's RFC 7638 implementation), for many keys (leading zero bytes in x or y included).
func TestThumbprintMatchesPosture(t *testing.T) {
	for range 200 {
		k := newKey(t)
		j, err := PublicJWK(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		want, err := posture.KeyThumbprint(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if got := j.Thumbprint(); got != want {
			t.Fatalf("thumbprint %s, posture says %s", got, want)
		}
		back, err := j.Key()
		if err != nil || !back.Equal(&k.PublicKey) {
			t.Fatalf("round trip: %v", err)
		}
	}
}

func TestProofAccepted(t *testing.T) {
	k := newKey(t)
	now := time.Unix(1_800_000_000, 0)
	p, err := NewProof(&k.PublicKey, signer(k), "nonce-1", "jti-1", now)
	if err != nil {
		t.Fatal(err)
	}
	j, e := VerifyProof(p, "nonce-1", now.Add(10*time.Second), time.Minute)
	if e != nil {
		t.Fatal(e)
	}
	want, _ := PublicJWK(&k.PublicKey)
	if j != want {
		t.Fatalf("key %+v, want %+v", j, want)
	}
}

// resign re-signs a proof's header and claims, as edited by edit, with k.
func resign(t *testing.T, proof string, k *ecdsa.PrivateKey, edit func(h, c map[string]any)) string {
	parts := strings.Split(proof, ".")
	var h, c map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(hb, &h)
	_ = json.Unmarshal(cb, &c)
	edit(h, c)
	hb, _ = json.Marshal(h)
	cb, _ = json.Marshal(c)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestProofRefused(t *testing.T) {
	k, other := newKey(t), newKey(t)
	now := time.Unix(1_800_000_000, 0)
	good, err := NewProof(&k.PublicKey, signer(k), "n", "j", now)
	if err != nil {
		t.Fatal(err)
	}
	otherJWK, _ := PublicJWK(&other.PublicKey)
	cases := []struct {
		name, proof, nonce, code string
	}{
		{"wrong nonce (a proof made for another connection)", good, "n2", CodeNonceInvalid},
		{"no nonce asked", good, "", CodeNonceInvalid},
		// Signed by another key than the one it names: the jwk is k's, the signature other's.
		{"signed by another key", resign(t, good, other, func(map[string]any, map[string]any) {}), "n", CodeProofInvalid},
		// Names another key than the one that signed it.
		{"names another key", resign(t, good, k, func(h, _ map[string]any) { h["jwk"] = otherJWK }), "n", CodeProofInvalid},
		{"wrong typ", resign(t, good, k, func(h, _ map[string]any) { h["typ"] = "JWT" }), "n", CodeProofInvalid},
		{"alg none", resign(t, good, k, func(h, _ map[string]any) { h["alg"] = "none" }), "n", CodeProofInvalid},
		{"for a backend", resign(t, good, k, func(_, c map[string]any) { c["htu"] = "https://chat.example/sessions" }), "n", CodeProofInvalid},
		{"stale", resign(t, good, k, func(_, c map[string]any) { c["iat"] = now.Add(-2 * time.Minute).Unix() }), "n", CodeProofInvalid},
		{"future", resign(t, good, k, func(_, c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }), "n", CodeProofInvalid},
		{"no jti", resign(t, good, k, func(_, c map[string]any) { delete(c, "jti") }), "n", CodeProofInvalid},
		{"extra claim", resign(t, good, k, func(_, c map[string]any) { c["ath"] = "x" }), "n", CodeProofInvalid},
		{"private key in jwk", resign(t, good, k, func(h, _ map[string]any) {
			h["jwk"] = map[string]any{"kty": "EC", "crv": "P-256", "x": otherJWK.X, "y": otherJWK.Y, "d": "AAAA"}
		}), "n", CodeProofInvalid},
		{"not on the curve", resign(t, good, k, func(h, _ map[string]any) {
			h["jwk"] = map[string]any{"kty": "EC", "crv": "P-256", "x": otherJWK.X, "y": otherJWK.X}
		}), "n", CodeProofInvalid},
		{"truncated", good[:len(good)-4], "n", CodeProofInvalid},
		{"two parts", "a.b", "n", CodeProofInvalid},
		{"huge", strings.Repeat("a", 5000), "n", CodeProofInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, e := VerifyProof(c.proof, c.nonce, now, time.Minute)
			if e == nil || e.Code != c.code {
				t.Fatalf("got %v, want code %s", e, c.code)
			}
		})
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, ok := range []string{`{"op":"nonce"}`, `{"op":"token","proof":"a.b.c"}`, ` {"op":"nonce"} `} {
		if _, e := DecodeRequest([]byte(ok)); e != nil {
			t.Errorf("%s: %v", ok, e)
		}
	}
	for _, bad := range []string{``, `{}`, `[]`, `{"op":"token"}`, `{"op":"nonce","proof":"x"}`, `{"op":"nonce"}{"op":"nonce"}`,
		`{"op":"nonce","extra":1}`, `{"op":"delete"}`, `null`, `{"op":1}`} {
		if _, e := DecodeRequest([]byte(bad)); e == nil || e.Code != CodeBadRequest {
			t.Errorf("%s: %v", bad, e)
		}
	}
	if _, e := DecodeRequest(make([]byte, MaxLine)); e == nil || e.Code != CodeTooLarge {
		t.Errorf("a too long line: %v", e)
	}
}

// FuzzDecodeRequest: any line decodes to a valid request or a refusal with a code, never a
// panic, and a decoded request re-encodes to one that decodes the same.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"nonce"}`))
	f.Add([]byte(`{"op":"token","proof":"eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.AAAA"}`))
	f.Add([]byte(`{"op":"token","proof":""}`))
	f.Add([]byte(`{"op":"\u006eonce"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, e := DecodeRequest(line)
		if e != nil {
			if e.Code != CodeBadRequest && e.Code != CodeTooLarge {
				t.Fatalf("code %q", e.Code)
			}
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, e := DecodeRequest(b); e != nil || r2 != r {
			t.Fatalf("re-decoded %+v %v, want %+v", r2, e, r)
		}
	})
}

// FuzzVerifyProof: any proof is accepted only with a key and a nonce, never panics.
func FuzzVerifyProof(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Unix(1_800_000_000, 0)
	good, _ := NewProof(&k.PublicKey, signer(k), "n", "j", now)
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, proof string) {
		j, e := VerifyProof(proof, "n", now, time.Minute)
		if e == nil {
			if _, err := j.Key(); err != nil {
				t.Fatalf("accepted a proof whose key is %v", err)
			}
		}
	})
}
