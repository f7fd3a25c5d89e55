// Package es256jws makes ES256 compact JWS (RFC 7515) with a P-256 key that only signs digests:
// a key in the macOS keychain, Windows CNG, the Secure Enclave or Android Keystore, reached
// through a function. It is the one builder of the signed proofs Hale's clients send (the
// posture package's DPoP proofs, the agent local endpoint's token proofs), and depends on the
// standard library only, so the agent links it without a JOSE library.
package es256jws

import (
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// SignFunc signs a SHA-256 digest and answers an ASN.1 DER ECDSA P-256 signature, as
// crypto.Signer and the platform key stores do.
type SignFunc func(digest []byte) ([]byte, error)

// Sign returns the compact JWS of claims under header (both marshalled as JSON; the header
// should name alg ES256), signed through sign.
func Sign(header, claims any, sign SignFunc) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(input))
	der, err := sign(digest[:])
	if err != nil {
		return "", fmt.Errorf("es256jws: signing: %w", err)
	}
	raw, err := RawSignature(der)
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(raw), nil
}

// RawSignature turns an ASN.1 DER ECDSA P-256 signature into JWS's r || s, 32 bytes each.
func RawSignature(der []byte) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, errors.New("es256jws: the signature is not an ASN.1 ECDSA P-256 signature")
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}
