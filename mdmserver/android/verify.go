package android

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GoogleKeysURL is where Google publishes the keys that sign its ID tokens, Pub/Sub push
// tokens among them.
const GoogleKeysURL = "https://www.googleapis.com/oauth2/v3/certs"

// googleIssuers are the issuers of Google ID tokens.
var googleIssuers = []string{"https://accounts.google.com", "accounts.google.com"}

// Bounds of the key set: how often an unknown key ID may make Hale fetch the keys again (a
// flood of tokens with made-up key IDs must not become a flood of fetches), and how long a
// fetched set is used.
const (
	keysRefetchAfter = time.Minute
	keysMaxAge       = 6 * time.Hour
	maxKeysBody      = 256 << 10
	clockLeeway      = time.Minute
)

// keySet caches Google's signing keys.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	set       *jose.JSONWebKeySet
	fetchedAt time.Time
}

// key returns the key with kid, fetching the set when it is missing or old.
func (k *keySet) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if k.set != nil && now.Sub(k.fetchedAt) < keysMaxAge {
		if ks := k.set.Key(kid); len(ks) > 0 {
			return &ks[0], nil
		}
		if now.Sub(k.fetchedAt) < keysRefetchAfter {
			return nil, fmt.Errorf("no Google key %q", kid)
		}
	}
	if err := k.fetch(ctx); err != nil {
		return nil, err
	}
	k.fetchedAt = now
	if ks := k.set.Key(kid); len(ks) > 0 {
		return &ks[0], nil
	}
	return nil, fmt.Errorf("no Google key %q", kid)
}

func (k *keySet) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching Google's keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching Google's keys: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxKeysBody)).Decode(&set); err != nil {
		return fmt.Errorf("the keys Google served are not a JWKS: %w", err)
	}
	k.set = &set
	return nil
}

// pushClaims are the claims of a Pub/Sub push ID token Hale checks.
type pushClaims struct {
	jwt.Claims
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
}

// errPushAuth is every verification failure; the detail goes to the log, the caller gets 401.
var errPushAuth = errors.New("android: push not signed by Google for this endpoint")

// verifyPush checks a push's ID token: RS256, signed by a Google key, issued by Google, for the
// configured audience, current, and (when configured) from the subscription's service account.
func (s *Service) verifyPush(ctx context.Context, token string) error {
	if s.audience == "" {
		return fmt.Errorf("%w: no push audience is configured", errPushAuth)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		return fmt.Errorf("%w: not a signed JWT", errPushAuth)
	}
	key, err := s.keys.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return fmt.Errorf("%w: %v", errPushAuth, err)
	}
	var c pushClaims
	if err := tok.Claims(key.Key, &c); err != nil {
		return fmt.Errorf("%w: bad signature", errPushAuth)
	}
	for _, iss := range googleIssuers {
		if err = c.ValidateWithLeeway(jwt.Expected{Issuer: iss, AnyAudience: jwt.Audience{s.audience}, Time: s.now()}, clockLeeway); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errPushAuth, err)
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		return fmt.Errorf("%w: the token has no expiry or issue time", errPushAuth)
	}
	if s.pushAccount != "" && (c.Email != s.pushAccount || !c.EmailVerified) {
		return fmt.Errorf("%w: pushed as %q, not the subscription's account", errPushAuth, c.Email)
	}
	return nil
}
