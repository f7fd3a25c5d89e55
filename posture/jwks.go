package posture

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeySource supplies the server's JSON Web Key Set (RFC 7517) that posture tokens and SETs are
// verified against.
type KeySource interface {
	JWKS(ctx context.Context) ([]byte, error)
}

// KeyRefresher is a KeySource that can fetch a newer key set on demand. Verifiers call Refresh
// when a token names a key the current set lacks, which is what a key rotation looks like.
type KeyRefresher interface {
	KeySource
	Refresh(ctx context.Context) ([]byte, error)
}

// StaticJWKS is a KeySource that always answers b: for tests, and for air-gapped backends that
// ship the server's keys in their configuration.
func StaticJWKS(b []byte) KeySource { return staticJWKS(bytes.Clone(b)) }

type staticJWKS []byte

func (s staticJWKS) JWKS(context.Context) ([]byte, error) { return s, nil }

// Limits on what a key source may hand over: a key set is a few hundred bytes per key.
const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 64
)

// Defaults of RemoteJWKS.
const (
	DefaultJWKSCacheTTL = 5 * time.Minute
	// jwksMinRefetch bounds refetches triggered by unknown kids, so a stream of forged tokens
	// cannot turn into a stream of requests to the server.
	jwksMinRefetch = 30 * time.Second
	// jwksMaxStale is how long the last good key set keeps serving while the server cannot be
	// reached: tokens are verified offline precisely so that sessions survive a server outage.
	jwksMaxStale = 24 * time.Hour
)

// RemoteKeySet fetches a key set over HTTP and caches it. Use RemoteJWKS or Client.Keys to make
// one.
type RemoteKeySet struct {
	url    string
	hc     *http.Client
	header http.Header
	ttl    time.Duration
	now    func() time.Time

	fetchMu sync.Mutex // one fetch at a time; waiters reuse its result

	mu          sync.Mutex
	raw         []byte
	fetchedAt   time.Time // last successful fetch
	attemptedAt time.Time // last fetch, successful or not
	lastErr     error
}

// RemoteOption configures a RemoteKeySet.
type RemoteOption func(*RemoteKeySet)

// WithJWKSCacheTTL sets how long a fetched key set is used before it is fetched again
// (default DefaultJWKSCacheTTL).
func WithJWKSCacheTTL(d time.Duration) RemoteOption {
	return func(r *RemoteKeySet) {
		if d > 0 {
			r.ttl = d
		}
	}
}

// WithJWKSClock sets the clock, for tests.
func WithJWKSClock(now func() time.Time) RemoteOption { return func(r *RemoteKeySet) { r.now = now } }

// RemoteJWKS returns a KeySource that fetches url (the server's /access/v1/jwks.json) with hc
// (nil: a client with a 10 second timeout and the system roots). The set is cached for
// the TTL. Fetches happen at most once every 30 seconds, whatever asks for them (an unknown kid
// calls Refresh), so forged tokens cannot make the backend hammer the server. If a fetch fails,
// the last good set keeps serving for up to 24 hours.
func RemoteJWKS(url string, hc *http.Client, opts ...RemoteOption) *RemoteKeySet {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	r := &RemoteKeySet{url: url, hc: hc, ttl: DefaultJWKSCacheTTL, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// JWKS answers the cached set, fetching it when it is older than the TTL.
func (r *RemoteKeySet) JWKS(ctx context.Context) ([]byte, error) {
	r.mu.Lock()
	raw, fresh := r.raw, r.raw != nil && r.now().Sub(r.fetchedAt) < r.ttl
	r.mu.Unlock()
	if fresh {
		return raw, nil
	}
	return r.fetch(ctx, false)
}

// Refresh fetches the set now, unless a fetch was attempted in the last 30 seconds, in which
// case it answers the cached set.
func (r *RemoteKeySet) Refresh(ctx context.Context) ([]byte, error) { return r.fetch(ctx, true) }

func (r *RemoteKeySet) fetch(ctx context.Context, forced bool) ([]byte, error) {
	r.mu.Lock()
	stale := r.usable(r.now())
	r.mu.Unlock()
	if stale == nil {
		r.fetchMu.Lock()
	} else if !r.fetchMu.TryLock() {
		// Another caller is fetching; the set it replaces is still good enough to answer with
		// instead of queueing behind a slow server.
		return stale, nil
	}
	defer r.fetchMu.Unlock()

	r.mu.Lock()
	now := r.now()
	if !forced && r.raw != nil && now.Sub(r.fetchedAt) < r.ttl {
		raw := r.raw // fetched while this caller waited for fetchMu
		r.mu.Unlock()
		return raw, nil
	}
	if !r.attemptedAt.IsZero() && now.Sub(r.attemptedAt) < jwksMinRefetch {
		raw, err := r.usable(now), r.lastErr
		r.mu.Unlock()
		if raw != nil {
			return raw, nil
		}
		if err == nil {
			err = errors.New("no key set fetched yet")
		}
		return nil, fmt.Errorf("posture: keys from %s unavailable (next fetch in under %s): %w", r.url, jwksMinRefetch, err)
	}
	prevAttempt := r.attemptedAt
	r.attemptedAt = now
	r.mu.Unlock()

	raw, err := r.get(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up; that says nothing about the server, so it must not delay
			// the next caller's fetch.
			r.attemptedAt = prevAttempt
		} else {
			r.lastErr = err
		}
		if stale := r.usable(r.now()); stale != nil {
			return stale, nil
		}
		return nil, err
	}
	r.raw, r.fetchedAt, r.lastErr = raw, r.now(), nil
	return raw, nil
}

// usable is the cached set if it is not too stale to serve; r.mu must be held.
func (r *RemoteKeySet) usable(now time.Time) []byte {
	if r.raw != nil && now.Sub(r.fetchedAt) < jwksMaxStale {
		return r.raw
	}
	return nil
}

func (r *RemoteKeySet) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("posture: fetching keys: %w", err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posture: fetching keys from %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("posture: reading keys from %s: %w", r.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("posture: fetching keys from %s: status %d", r.url, resp.StatusCode)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("posture: key set from %s is larger than %d bytes", r.url, maxJWKSBytes)
	}
	// Refuse to cache something that is not a key set, so a bad answer cannot evict a good one.
	if _, err := parseKeySet(body); err != nil {
		return nil, fmt.Errorf("posture: key set from %s: %w", r.url, err)
	}
	return body, nil
}

// parseKeySet keeps the set's ES256 signing keys by kid. Keys of other kinds are skipped, not an
// error, so a server may publish keys this SDK does not use.
func parseKeySet(raw []byte) (map[string]*ecdsa.PublicKey, error) {
	if len(raw) > maxJWKSBytes {
		return nil, fmt.Errorf("key set is larger than %d bytes", maxJWKSBytes)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`not a JSON Web Key Set: no "keys" member`)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("key set holds %d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	keys := make(map[string]*ecdsa.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		var jwk jose.JSONWebKey
		if json.Unmarshal(k, &jwk) != nil || jwk.KeyID == "" || !jwk.IsPublic() || !jwk.Valid() {
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" || jwk.Algorithm != "" && jwk.Algorithm != string(jose.ES256) {
			continue
		}
		pub, ok := jwk.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			continue
		}
		keys[jwk.KeyID] = pub
	}
	return keys, nil
}

// keyring turns a KeySource into key lookups by kid, parsing each distinct set once.
type keyring struct {
	src KeySource

	mu   sync.Mutex
	raw  []byte
	keys map[string]*ecdsa.PublicKey
}

// key finds kid, refreshing the source once if the current set lacks it. Errors wrap
// ErrKeysUnavailable or ErrUnknownKey.
func (k *keyring) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	if k.src == nil {
		return nil, fmt.Errorf("%w: no key source configured", ErrKeysUnavailable)
	}
	raw, err := k.src.JWKS(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	keys, err := k.parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	if pub := keys[kid]; pub != nil {
		return pub, nil
	}
	if r, ok := k.src.(KeyRefresher); ok {
		if raw, err := r.Refresh(ctx); err == nil {
			if keys, err := k.parse(raw); err == nil && keys[kid] != nil {
				return keys[kid], nil
			}
		}
	}
	return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, truncate(kid, 64))
}

func (k *keyring) parse(raw []byte) (map[string]*ecdsa.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil && bytes.Equal(raw, k.raw) {
		return k.keys, nil
	}
	keys, err := parseKeySet(raw)
	if err != nil {
		return nil, err
	}
	k.raw, k.keys = bytes.Clone(raw), keys
	return keys, nil
}

// truncate bounds attacker-chosen strings before they reach an error message or a log.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
