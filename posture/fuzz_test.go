package posture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/posture"
)

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, and never accept anything
// but a token for the one device the only signing key signed for.
func FuzzVerify(f *testing.F) {
	key := newSigner(f, "k1")
	cert := deviceCert(f, "d1")
	valid := key.token(f, claims("d1", cert, t0.Add(-time.Minute)))
	f.Add(valid)
	f.Add(key.sign(f, posture.SETType, claims("d1", cert, t0)))
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Repeat(".", 100))
	v := posture.NewVerifier(posture.StaticJWKS(jwks(f, key)), posture.WithVerifierClock(func() time.Time { return t0 }))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token, cert)
		if err == nil && (c == nil || c.Subject != "d1") {
			t.Fatalf("accepted %q as %+v", token, c)
		}
		if err != nil && c != nil {
			t.Fatal("claims returned with an error")
		}
	})
}
