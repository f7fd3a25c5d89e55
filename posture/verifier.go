package posture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// DefaultLeeway is the clock skew a Verifier tolerates on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// Verifier checks posture tokens offline: signature against the server's key set, type,
// audience, issuer, lifetime, the binding to the peer's certificate, and revocations received
// as events. It is safe for concurrent use.
type Verifier struct {
	keys     keyring
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time

	mu      sync.Mutex
	revoked map[string]time.Time // device ID -> tokens issued at or before this are refused

	proofs proofs // jtis of accepted DPoP proofs (dpop.go)
}

// VerifierOption configures a Verifier.
type VerifierOption func(*Verifier)

// WithIssuer makes the Verifier refuse tokens whose iss is not iss. Set it: a server's tokens
// are then never taken for another's that shares the key source.
func WithIssuer(iss string) VerifierOption { return func(v *Verifier) { v.issuer = iss } }

// WithLeeway sets the tolerated clock skew (default DefaultLeeway).
func WithLeeway(d time.Duration) VerifierOption {
	return func(v *Verifier) {
		if d >= 0 {
			v.leeway = d
		}
	}
}

// WithVerifierClock sets the clock, for tests.
func WithVerifierClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) { v.now = now }
}

// NewVerifier returns a Verifier for tokens signed by keys in keys (usually Client.Keys or
// RemoteJWKS).
func NewVerifier(keys KeySource, opts ...VerifierOption) *Verifier {
	v := &Verifier{
		keys: keyring{src: keys}, audience: TokenAudience, leeway: DefaultLeeway, now: time.Now,
		revoked: map[string]time.Time{},
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

// Verify checks token as presented over a connection whose client certificate is peer, and
// answers its claims. A token is refused (with an error matching one of the Err values) unless
// it is an ES256 "posture+jwt" signed by a known key, for TokenAudience and the configured
// issuer, within its validity (with leeway) and MaxTokenLifetime, bound to peer by
// cnf.x5t#S256, and issued after any revocation of its device.
func (v *Verifier) Verify(ctx context.Context, token string, peer *x509.Certificate) (*TokenClaims, error) {
	if peer == nil || len(peer.Raw) == 0 {
		return nil, ErrNoPeerCertificate
	}
	return v.verify(ctx, token, peer)
}

// VerifyUnbound checks token like Verify except for its certificate binding. It is for a party
// that does not see the presenter's TLS connection, such as the server's own check endpoint,
// which answers the live decision of the device a token names. Whoever accepts a token as proof
// of a session must use Verify with the peer's certificate.
func (v *Verifier) VerifyUnbound(ctx context.Context, token string) (*TokenClaims, error) {
	return v.verify(ctx, token, nil)
}

// verify checks token, and its binding to peer unless peer is nil.
func (v *Verifier) verify(ctx context.Context, token string, peer *x509.Certificate) (*TokenClaims, error) {
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(token), MaxTokenBytes)
	}
	payload, err := verifyJWS(ctx, &v.keys, token, TokenType)
	if err != nil {
		return nil, err
	}
	var c TokenClaims
	if err := json.NewDecoder(bytes.NewReader(payload)).Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	if err := v.checkClaims(&c, peer); err != nil {
		return nil, err
	}
	return &c, nil
}

func (v *Verifier) checkClaims(c *TokenClaims, peer *x509.Certificate) error {
	if c.Subject == "" || c.IssuedAt == 0 || c.Expiry == 0 {
		return fmt.Errorf("%w: sub, iat and exp are required", ErrMalformed)
	}
	if c.Audience != v.audience {
		return fmt.Errorf("%w: aud %q, want %q", ErrWrongAudience, truncate(c.Audience, 128), v.audience)
	}
	if v.issuer != "" && c.Issuer != v.issuer {
		return fmt.Errorf("%w: iss %q, want %q", ErrWrongIssuer, truncate(c.Issuer, 128), v.issuer)
	}
	if c.Expiry-c.IssuedAt > int64(MaxTokenLifetime/time.Second) {
		// Revocations are remembered for MaxTokenLifetime; a longer-lived token would outlive
		// its own revocation.
		return fmt.Errorf("%w: lifetime %ds exceeds %s", ErrMalformed, c.Expiry-c.IssuedAt, MaxTokenLifetime)
	}
	now := v.now()
	if exp := time.Unix(c.Expiry, 0); !now.Before(exp.Add(v.leeway)) {
		return fmt.Errorf("%w: at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if nbf := time.Unix(c.NotBefore, 0); c.NotBefore != 0 && now.Add(v.leeway).Before(nbf) {
		return fmt.Errorf("%w: not before %s", ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
	}
	if iat := time.Unix(c.IssuedAt, 0); now.Add(v.leeway).Before(iat) {
		return fmt.Errorf("%w: issued in the future (%s)", ErrNotYetValid, iat.UTC().Format(time.RFC3339))
	}
	// A nil peer is VerifyUnbound or VerifyWithProof: the caller checks the binding.
	if peer != nil && subtle.ConstantTimeCompare([]byte(c.Confirm.X5tS256), []byte(Thumbprint(peer))) != 1 {
		return fmt.Errorf("%w: token for x5t#S256 %q, peer presented %q", ErrWrongBinding,
			truncate(c.Confirm.X5tS256, 64), Thumbprint(peer))
	}
	v.mu.Lock()
	at, revoked := v.revoked[c.Subject]
	v.mu.Unlock()
	if revoked && c.IssuedAt <= at.Unix() {
		return fmt.Errorf("%w: device %s was revoked at %s", ErrRevoked, c.Subject, at.UTC().Format(time.RFC3339))
	}
	return nil
}

// Revoke refuses, from now on, every token for deviceID issued at or before at. A Receiver
// calls it on session-revoked events and on compliance changes to not-compliant. Revocations
// are forgotten once every token they cover has expired (MaxTokenLifetime plus the leeway).
func (v *Verifier) Revoke(deviceID string, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	for id, t := range v.revoked {
		if now.Sub(t) > MaxTokenLifetime+v.leeway {
			delete(v.revoked, id)
		}
	}
	if prev, ok := v.revoked[deviceID]; !ok || at.After(prev) {
		v.revoked[deviceID] = at
	}
}

// Thumbprint is the certificate's x5t#S256 (RFC 8705 section 3.1): the unpadded base64url
// SHA-256 of its DER, as posture tokens carry it in cnf.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
