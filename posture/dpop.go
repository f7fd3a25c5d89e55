package posture

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/halemdm/hale/internal/es256jws"
)

// Tokens for the messaging app are bound to the app instance's own key, not to a certificate:
// cnf.jkt (RFC 7800, RFC 9449 section 6) is the RFC 7638 thumbprint of that key, and each
// request that presents one carries a DPoP proof (RFC 9449) signed by the key, over the request's
// method and URL and the token's hash. A stolen token without the key opens nothing.

// DPoPType is the "typ" header of a DPoP proof.
const DPoPType = "dpop+jwt"

// DPoPHeader carries the proof on HTTP requests (RFC 9449 section 4.1).
const DPoPHeader = "DPoP"

// ProofWindow is how long after its iat a proof is accepted (plus the leeway), and so how long
// its jti is remembered to refuse a replay.
const ProofWindow = time.Minute

// maxProofs bounds the jtis remembered; past it new proofs are refused until old ones age out,
// which fails closed rather than forgetting a jti that could then be replayed.
const maxProofs = 100_000

var (
	// ErrProof: the DPoP proof is missing, malformed, signed by another key than the token's
	// cnf.jkt, for another request, stale, or replayed.
	ErrProof = errors.New("posture: invalid proof of possession")
	// ErrNotKeyBound: a proof was presented with a token bound to a certificate, or none with a
	// token bound to a key.
	ErrNotKeyBound = errors.New("posture: token and proof do not match in kind")
)

// dpopClaims are a DPoP proof's claims.
type dpopClaims struct {
	JTI string `json:"jti"`
	HTM string `json:"htm"`
	HTU string `json:"htu"`
	IAT int64  `json:"iat"`
	ATH string `json:"ath"`
}

// proofs remembers the jtis of accepted proofs until they could no longer be accepted anyway.
type proofs struct {
	mu   sync.Mutex
	seen map[string]time.Time // jti -> when it may be forgotten
}

func (p *proofs) use(jti string, now, until time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]time.Time{}
	}
	if len(p.seen) >= maxProofs {
		for k, t := range p.seen {
			if now.After(t) {
				delete(p.seen, k)
			}
		}
		if len(p.seen) >= maxProofs {
			return fmt.Errorf("%w: too many proofs in flight", ErrProof)
		}
	}
	if t, ok := p.seen[jti]; ok && !now.After(t) {
		return fmt.Errorf("%w: jti already used", ErrProof)
	}
	p.seen[jti] = until
	return nil
}

// KeyThumbprint is the RFC 7638 SHA-256 thumbprint of an EC P-256 public key, unpadded
// base64url, as cnf.jkt carries it.
func KeyThumbprint(pub *ecdsa.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	t, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// VerifyWithProof checks a key-bound token (cnf.jkt) presented with a DPoP proof on a request
// of method to requestURL: the token as Verify checks it except for the certificate binding,
// then the proof: an ES256 "dpop+jwt" whose embedded jwk is the key cnf.jkt names, for this
// method and URL (query and fragment ignored), with ath the token's hash, issued within
// ProofWindow, and never seen before.
func (v *Verifier) VerifyWithProof(ctx context.Context, token, proof, method, requestURL string) (*TokenClaims, error) {
	c, err := v.verify(ctx, token, nil)
	if err != nil {
		return nil, err
	}
	if c.Confirm.JKT == "" {
		return nil, fmt.Errorf("%w: the token is bound to a certificate, present it over mutual TLS", ErrNotKeyBound)
	}
	if err := v.checkProof(token, proof, method, requestURL, c.Confirm.JKT); err != nil {
		return nil, err
	}
	return c, nil
}

func (v *Verifier) checkProof(token, proof, method, requestURL, jkt string) error {
	if proof == "" {
		return fmt.Errorf("%w: no %s header", ErrProof, DPoPHeader)
	}
	if len(proof) > MaxTokenBytes {
		return fmt.Errorf("%w: %d bytes", ErrProof, len(proof))
	}
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return fmt.Errorf("%w: not an ES256 compact JWS", ErrProof)
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !typeIs(typ, DPoPType) {
		return fmt.Errorf("%w: typ %q, want %q", ErrProof, truncate(typ, 64), DPoPType)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return fmt.Errorf("%w: no public jwk header", ErrProof)
	}
	pub, ok := h.JSONWebKey.Key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("%w: the jwk is not an EC P-256 key", ErrProof)
	}
	thumb, err := KeyThumbprint(pub)
	if err != nil || subtle.ConstantTimeCompare([]byte(thumb), []byte(jkt)) != 1 {
		return fmt.Errorf("%w: signed by another key than the token's cnf.jkt", ErrProof)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return fmt.Errorf("%w: bad signature", ErrProof)
	}
	var pc dpopClaims
	if err := json.Unmarshal(payload, &pc); err != nil {
		return fmt.Errorf("%w: claims: %v", ErrProof, err)
	}
	if pc.JTI == "" || len(pc.JTI) > 128 {
		return fmt.Errorf("%w: jti missing or too long", ErrProof)
	}
	if !strings.EqualFold(pc.HTM, method) {
		return fmt.Errorf("%w: htm %q for a %s request", ErrProof, truncate(pc.HTM, 16), method)
	}
	if want, got := normalizeHTU(requestURL), normalizeHTU(pc.HTU); want == "" || got != want {
		return fmt.Errorf("%w: htu %q for %q", ErrProof, truncate(pc.HTU, 128), want)
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare([]byte(pc.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
		return fmt.Errorf("%w: ath is not the token's hash", ErrProof)
	}
	now := v.now()
	iat := time.Unix(pc.IAT, 0)
	if pc.IAT == 0 || now.Sub(iat) > ProofWindow+v.leeway || iat.Sub(now) > v.leeway {
		return fmt.Errorf("%w: issued at %s, outside %s of now", ErrProof, iat.UTC().Format(time.RFC3339), ProofWindow)
	}
	return v.proofs.use(pc.JTI, now, iat.Add(ProofWindow+2*v.leeway))
}

// normalizeHTU is a URL as RFC 9449 section 4.3 compares them: scheme and host lower-cased,
// default port dropped, no query or fragment.
func normalizeHTU(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if (scheme == "https" && strings.HasSuffix(host, ":443")) || (scheme == "http" && strings.HasSuffix(host, ":80")) {
		host = host[:strings.LastIndex(host, ":")]
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

// SignFunc signs a SHA-256 digest with the app key and answers an ASN.1 DER ECDSA signature,
// as crypto.Signer, the Secure Enclave (SecKeyCreateSignature with
// ecdsaSignatureDigestX962SHA256) and Android Keystore (SHA256withECDSA) do.
type SignFunc func(digest []byte) ([]byte, error)

// NewProof makes a DPoP proof for a request of method to requestURL presenting token, signed
// by the key pub through sign, issued at iat with the unique jti. The messaging app's client
// (mobile/) makes one per request; tests make them too.
func NewProof(pub *ecdsa.PublicKey, sign SignFunc, method, requestURL, token, jti string, iat time.Time) (string, error) {
	jwk, err := json.Marshal(jose.JSONWebKey{Key: pub})
	if err != nil {
		return "", err
	}
	ath := sha256.Sum256([]byte(token))
	return es256jws.Sign(map[string]any{"typ": DPoPType, "alg": "ES256", "jwk": json.RawMessage(jwk)},
		dpopClaims{JTI: jti, HTM: method, HTU: requestURL, IAT: iat.Unix(), ATH: base64.RawURLEncoding.EncodeToString(ath[:])},
		es256jws.SignFunc(sign))
}
