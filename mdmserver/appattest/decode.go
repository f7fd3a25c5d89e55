package appattest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// decMode is strict: duplicate map keys, indefinite lengths and deep nesting are refused, and
// sizes are bounded, because the bytes come straight from a client.
var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		MaxNestedLevels:   8,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// attestationObject is Apple's attestation object: WebAuthn's layout with fmt apple-appattest.
type attestationObject struct {
	Fmt     string `cbor:"fmt"`
	AttStmt struct {
		X5c     [][]byte `cbor:"x5c"`
		Receipt []byte   `cbor:"receipt"`
	} `cbor:"attStmt"`
	AuthData []byte `cbor:"authData"`
}

// assertionObject is Apple's assertion: a signature and the authenticator data it covers.
type assertionObject struct {
	Signature         []byte `cbor:"signature"`
	AuthenticatorData []byte `cbor:"authenticatorData"`
}

func decodeAttestation(b []byte) (*attestationObject, error) {
	var obj attestationObject
	if err := decMode.Unmarshal(b, &obj); err != nil {
		return nil, refuse(ReasonMalformed, "attestation object is not Apple's CBOR map: %v", err)
	}
	if obj.Fmt == "" || obj.AuthData == nil || obj.AttStmt.X5c == nil {
		return nil, refuse(ReasonMalformed, "attestation object lacks fmt, attStmt.x5c or authData")
	}
	return &obj, nil
}

func decodeAssertion(b []byte) (*assertionObject, error) {
	var obj assertionObject
	if err := decMode.Unmarshal(b, &obj); err != nil {
		return nil, refuse(ReasonAssertionMalformed, "assertion is not Apple's CBOR map: %v", err)
	}
	if len(obj.Signature) == 0 || len(obj.AuthenticatorData) == 0 {
		return nil, refuse(ReasonAssertionMalformed, "assertion lacks signature or authenticatorData")
	}
	return &obj, nil
}

// authData is WebAuthn authenticator data as App Attest fills it.
type authData struct {
	rpIDHash     []byte
	flags        byte
	counter      uint32
	aaguid       []byte
	credentialID []byte
	publicKey    *ecdsa.PublicKey
}

// flagAttestedCredentialData is the AT bit: attested credential data follows the counter.
const flagAttestedCredentialData = 0x40

// parseAuthData splits authenticator data: rpIdHash(32) flags(1) signCount(4), then for an
// attestation aaguid(16) credentialIdLength(2) credentialId and the COSE public key.
func parseAuthData(b []byte, attested bool) (*authData, error) {
	if len(b) < 37 {
		return nil, refuse(ReasonMalformed, "authenticator data of %d bytes is shorter than 37", len(b))
	}
	a := &authData{rpIDHash: b[:32], flags: b[32], counter: binary.BigEndian.Uint32(b[33:37])}
	if !attested {
		return a, nil
	}
	if a.flags&flagAttestedCredentialData == 0 {
		return nil, refuse(ReasonMalformed, "authenticator data has no attested credential data")
	}
	rest := b[37:]
	if len(rest) < 18 {
		return nil, refuse(ReasonMalformed, "attested credential data is truncated")
	}
	a.aaguid = rest[:16]
	n := int(binary.BigEndian.Uint16(rest[16:18]))
	rest = rest[18:]
	if n == 0 || n > len(rest) {
		return nil, refuse(ReasonMalformed, "credential ID length %d does not fit", n)
	}
	a.credentialID = rest[:n]
	pub, err := parseCOSEKey(rest[n:])
	if err != nil {
		return nil, refuse(ReasonMalformed, "credential public key: %v", err)
	}
	a.publicKey = pub
	return a, nil
}

// coseKey is an EC2 COSE key (RFC 9053): kty 2, alg -7 (ES256), crv 1 (P-256), x, y.
type coseKey struct {
	Kty int    `cbor:"1,keyasint"`
	Alg int    `cbor:"3,keyasint"`
	Crv int    `cbor:"-1,keyasint"`
	X   []byte `cbor:"-2,keyasint"`
	Y   []byte `cbor:"-3,keyasint"`
}

func parseCOSEKey(b []byte) (*ecdsa.PublicKey, error) {
	var k coseKey
	// The key is the last item: trailing bytes would be extensions App Attest never sends.
	if err := decMode.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	if k.Kty != 2 || k.Alg != -7 || k.Crv != 1 {
		return nil, fmt.Errorf("COSE key kty %d alg %d crv %d, want EC2 ES256 P-256", k.Kty, k.Alg, k.Crv)
	}
	if len(k.X) != 32 || len(k.Y) != 32 {
		return nil, errors.New("COSE key coordinates are not 32 bytes each")
	}
	point := append(append([]byte{4}, k.X...), k.Y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, err
	}
	return pub, nil
}
