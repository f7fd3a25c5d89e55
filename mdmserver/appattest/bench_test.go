package appattest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/halemdm/hale/internal/applesim"
	"github.com/halemdm/hale/internal/playsim"
	"github.com/halemdm/hale/mdmserver/appattest"
	"github.com/halemdm/hale/mdmserver/playintegrity"
)

// BenchmarkAppProof measures what the server spends proving an app instance, next to the
// baseline a backend pays for any signed request: verifying one plain ES256 JWT (go-jose,
// parse and verify). Register is one App Attest attestation (CBOR, a two-certificate chain
// with a P-384 root, nonce, key and authenticator checks); assertion is one App Attest
// assertion (CBOR, one P-256 signature, counter); playintegrity is one Play Integrity token
// (AES key unwrap, AES-GCM, ES256, JSON checks). The ratios are ours / es256-jwt.
func BenchmarkAppProof(b *testing.B) {
	const appID = "ABCDE12345.org.example.securetext"
	ca, err := applesim.NewAppAttestCA()
	if err != nil {
		b.Fatal(err)
	}
	key, err := applesim.NewAppAttestKey(appID)
	if err != nil {
		b.Fatal(err)
	}
	challenge := []byte("server nonce")
	att, err := key.Attest(ca, challenge)
	if err != nil {
		b.Fatal(err)
	}
	v, err := appattest.New("ABCDE12345", "org.example.securetext", appattest.WithRoots(ca.Pool()))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"passcode_set":true,"jailbroken":false,"screen_captured":false,"app_version":"3.2.1","os_version":"17.5"}`)
	assertion, err := key.Assert(body)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("register", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.VerifyAttestation(att, challenge, key.KeyID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("assertion", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.VerifyAssertion(assertion, body, key.PublicKey(), 0); err != nil {
				b.Fatal(err)
			}
		}
	})

	play, err := playsim.New()
	if err != nil {
		b.Fatal(err)
	}
	cert := playsim.CertificateDigest([]byte("cert"))
	tok, err := play.Token(playsim.Genuine("org.example.securetext", cert, "nonce", time.Now()))
	if err != nil {
		b.Fatal(err)
	}
	pv, err := playintegrity.New("org.example.securetext", play.DecryptionKey, play.VerificationKey,
		playintegrity.WithCertificateDigests(cert), playintegrity.WithMaxAge(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("playintegrity", func(b *testing.B) {
		for b.Loop() {
			if _, err := pv.Verify(tok, "nonce"); err != nil {
				b.Fatal(err)
			}
		}
	})

	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwtKey}, nil)
	if err != nil {
		b.Fatal(err)
	}
	jws, err := signer.Sign(body)
	if err != nil {
		b.Fatal(err)
	}
	jwt, err := jws.CompactSerialize()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("es256-jwt", func(b *testing.B) {
		for b.Loop() {
			s, err := jose.ParseSignedCompact(jwt, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Verify(&jwtKey.PublicKey); err != nil {
				b.Fatal(err)
			}
		}
	})
}
