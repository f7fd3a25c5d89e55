package es256jws_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/halemdm/hale/internal/es256jws"
)

func TestSignVerifies(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := es256jws.Sign(map[string]string{"alg": "ES256"}, map[string]int{"iat": 1}, func(d []byte) ([]byte, error) {
		return ecdsa.SignASN1(rand.Reader, key, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(jws, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(&key.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatalf("the signature does not verify: %s", jws)
	}
	if _, err := es256jws.RawSignature([]byte("not DER")); err == nil {
		t.Fatal("RawSignature accepted garbage")
	}
}
