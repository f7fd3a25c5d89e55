package localproto

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"time"

	"github.com/halemdm/hale/internal/es256jws"
)

// ProofType is the "typ" of a proof (RFC 9449 section 4.2).
const ProofType = "dpop+jwt"

// maxProof bounds a proof's compact serialization.
const maxProof = 4 << 10

// JWK is an EC P-256 public key as a JSON Web Key (RFC 7517, RFC 7518 section 6.2.1), with its
// coordinates unpadded base64url of exactly 32 bytes each.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// PublicJWK is pub as a JWK; pub must be a P-256 key.
func PublicJWK(pub *ecdsa.PublicKey) (JWK, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return JWK{}, errors.New("localproto: the key is not EC P-256")
	}
	raw, err := pub.Bytes() // 0x04 || X || Y, fixed size
	if err != nil {
		return JWK{}, err
	}
	enc := base64.RawURLEncoding.EncodeToString
	return JWK{Kty: "EC", Crv: "P-256", X: enc(raw[1:33]), Y: enc(raw[33:])}, nil
}

// Key is the public key j names; it refuses anything but a valid P-256 point.
func (j JWK) Key() (*ecdsa.PublicKey, error) {
	if j.Kty != "EC" || j.Crv != "P-256" {
		return nil, errors.New("the jwk is not an EC P-256 key")
	}
	x, errX := base64.RawURLEncoding.Strict().DecodeString(j.X)
	y, errY := base64.RawURLEncoding.Strict().DecodeString(j.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("the jwk's coordinates are not 32-byte base64url")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, errors.New("the jwk is not a point on P-256")
	}
	return pub, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of j, unpadded base64url: the members crv,
// kty, x, y in that order without whitespace, as cnf.jkt carries it.
func (j JWK) Thumbprint() string {
	in := `{"crv":"` + j.Crv + `","kty":"` + j.Kty + `","x":"` + j.X + `","y":"` + j.Y + `"}`
	sum := sha256.Sum256([]byte(in))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SignFunc signs a SHA-256 digest with the app's key and answers an ASN.1 DER ECDSA signature
// (what crypto.Signer, the macOS keychain and Windows CNG give).
type SignFunc func(digest []byte) ([]byte, error)

type proofHeader struct {
	Typ string `json:"typ"`
	Alg string `json:"alg"`
	JWK *JWK   `json:"jwk"`
}

// ProofClaims are a proof's claims.
type ProofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	Nonce string `json:"nonce"`
}

// NewProof makes the proof a token request carries: signed through sign by the key pub, over
// the agent's nonce, with the unique jti, issued at iat.
func NewProof(pub *ecdsa.PublicKey, sign SignFunc, nonce, jti string, iat time.Time) (string, error) {
	jwk, err := PublicJWK(pub)
	if err != nil {
		return "", err
	}
	return es256jws.Sign(proofHeader{Typ: ProofType, Alg: "ES256", JWK: &jwk},
		ProofClaims{JTI: jti, HTM: ProofHTM, HTU: ProofHTU, IAT: iat.Unix(), Nonce: nonce}, es256jws.SignFunc(sign))
}

// VerifyProof checks a token request's proof against the nonce the connection was given and
// the time now, and answers the key it was signed with: an ES256 dpop+jwt whose embedded jwk
// verifies its signature, for ProofHTM and ProofHTU, carrying nonce, issued within skew of now.
// Every failure is a *Error of code proof_invalid or nonce_invalid.
func VerifyProof(proof, nonce string, now time.Time, skew time.Duration) (JWK, *Error) {
	bad := func(format string, args ...any) (JWK, *Error) {
		return JWK{}, Errorf(CodeProofInvalid, format, args...)
	}
	if len(proof) > maxProof {
		return bad("the proof is longer than %d bytes", maxProof)
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return bad("not a compact JWS")
	}
	dec := base64.RawURLEncoding.Strict()
	hb, err1 := dec.DecodeString(parts[0])
	cb, err2 := dec.DecodeString(parts[1])
	sig, err3 := dec.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return bad("not base64url")
	}
	var h proofHeader
	if err := strictJSON(hb, &h); err != nil || h.JWK == nil {
		return bad("the header is not {typ, alg, jwk}")
	}
	if h.Typ != ProofType || h.Alg != "ES256" {
		return bad("typ %q alg %q, want %q ES256", trunc(h.Typ), trunc(h.Alg), ProofType)
	}
	pub, err := h.JWK.Key()
	if err != nil {
		return bad("%v", err)
	}
	if len(sig) != 64 {
		return bad("the signature is not 64 bytes")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return bad("the signature does not verify with the proof's jwk")
	}
	var c ProofClaims
	if err := strictJSON(cb, &c); err != nil {
		return bad("the claims are not {jti, htm, htu, iat, nonce}")
	}
	if c.JTI == "" || len(c.JTI) > 128 || c.HTM != ProofHTM || c.HTU != ProofHTU {
		return bad("jti, htm %q or htu %q is wrong (want %s %s)", trunc(c.HTM), trunc(c.HTU), ProofHTM, ProofHTU)
	}
	if iat := time.Unix(c.IAT, 0); c.IAT == 0 || iat.Before(now.Add(-skew)) || iat.After(now.Add(skew)) {
		return bad("issued at %d, not within %s of the agent's clock", c.IAT, skew)
	}
	if nonce == "" || c.Nonce != nonce {
		return JWK{}, Errorf(CodeNonceInvalid, "the proof is not over the nonce this connection was given")
	}
	return *h.JWK, nil
}

// strictJSON decodes one object with no unknown members.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
