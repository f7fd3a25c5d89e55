package posture

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// MaxTokenBytes bounds the posture tokens and SETs this package parses. A real one is under 2 KiB.
const MaxTokenBytes = 8 << 10

// verifyJWS checks a compact JWS signed with ES256 by a key from ring whose "typ" is wantTyp,
// and answers its payload. Errors wrap the package's sentinels.
func verifyJWS(ctx context.Context, ring *keyring, token, wantTyp string) ([]byte, error) {
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(token), MaxTokenBytes)
	}
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedAlgorithm, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if h.JSONWebKey != nil {
		// A key embedded in the token would let anyone sign; keys come from the key source only.
		return nil, fmt.Errorf("%w: embedded jwk header", ErrMalformed)
	}
	for _, name := range []jose.HeaderKey{"crit", "b64"} {
		if _, ok := h.ExtraHeaders[name]; ok {
			return nil, fmt.Errorf("%w: unsupported %q header", ErrMalformed, name)
		}
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !typeIs(typ, wantTyp) {
		return nil, fmt.Errorf("%w: typ %q, want %q", ErrWrongType, truncate(typ, 64), wantTyp)
	}
	if h.KeyID == "" {
		return nil, fmt.Errorf("%w: no kid header", ErrUnknownKey)
	}
	key, err := ring.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("%w: kid %q", ErrBadSignature, truncate(h.KeyID, 64))
	}
	return payload, nil
}

// typeIs compares a "typ" header with a media type the way RFC 7515 section 4.1.9 asks:
// case-insensitively, with the "application/" prefix optional.
func typeIs(typ, want string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, want)
}
