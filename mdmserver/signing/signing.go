// Package signing is the server's JOSE signing keyset: the ES256 keys that sign posture tokens
// (typ "posture+jwt") and Security Event Tokens (typ "secevent+jwt"), and the JWKS that
// verifiers fetch to check them.
//
// One current key signs. When it is rotated it stays published, retired, for an overlap period
// so that tokens and SETs signed before the rotation still verify. Private keys are kept in the
// store (a Repository) sealed under the server's master key; a key the server cannot open is an error, never a
// reason to quietly make a new one.
package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/halemdm/hale/internal/seal"
	"github.com/halemdm/hale/posture"
)

// sealPurpose binds sealed private keys to this slot of the store.
const sealPurpose = "hale/signing-key"

// algES256 is the only algorithm the keyset signs with.
const algES256 = string(jose.ES256)

// Defaults for WithRotation.
const (
	DefaultRotateEvery = 7 * 24 * time.Hour
	DefaultOverlap     = 48 * time.Hour
)

// maxRunInterval caps how long Run waits between checks, so a long rotation period still
// notices a due key (and expired retired keys) within the hour.
const maxRunInterval = time.Hour

// key is a loaded signing key. It is never changed after it is built; rotation replaces it.
type key struct {
	kid     string
	created time.Time
	retired time.Time // zero while current
	priv    *ecdsa.PrivateKey
	// signers holds a ready signer for each token type the server issues; other types get a
	// signer built per call.
	signers map[string]jose.Signer
}

// Keyset holds ES256 (P-256) signing keys: one current key that signs, and retired keys still
// published in the JWKS for an overlap period so tokens and SETs signed before a rotation verify.
// It is safe for concurrent use.
type Keyset struct {
	st      Store
	seal    *seal.Key
	now     func() time.Time
	every   time.Duration
	overlap time.Duration
	log     *slog.Logger
	optErr  error

	// rotMu serializes rotations and pruning so the store and memory change together.
	rotMu sync.Mutex

	mu      sync.RWMutex
	current *key
	retired []*key // newest retirement first; only keys still within the overlap
	jwks    []byte
	// jwksUntil is when the oldest retired key in jwks leaves its overlap and the cached JWKS
	// must be rebuilt; zero when no retired key is published.
	jwksUntil time.Time
}

// Option configures a Keyset.
type Option func(*Keyset)

// WithClock sets the clock used for key ages and overlap (tests).
func WithClock(now func() time.Time) Option {
	return func(k *Keyset) { k.now = now }
}

// WithRotation sets how old the current key may get before RotateIfDue replaces it, and how
// long a retired key stays published after it stops signing. The overlap must exceed the
// lifetime of anything signed (posture tokens, SETs awaiting delivery) or those stop verifying
// early. Defaults: DefaultRotateEvery and DefaultOverlap.
func WithRotation(every, overlap time.Duration) Option {
	return func(k *Keyset) {
		if every <= 0 || overlap < 0 {
			k.optErr = fmt.Errorf("signing: rotation period must be positive and overlap not negative (got %v, %v)", every, overlap)
			return
		}
		k.every, k.overlap = every, overlap
	}
}

// WithLogger sets the logger for rotations and background errors.
func WithLogger(l *slog.Logger) Option {
	return func(k *Keyset) {
		if l != nil {
			k.log = l
		}
	}
}

// Open loads the keyset from st, creating a first key when there is none. Every stored private
// key must open with sealKey: a key that does not (wrong master key, tampering) is an error, so
// that tokens already issued are never orphaned by a silent regeneration.
func Open(ctx context.Context, st Store, sealKey *seal.Key, opts ...Option) (*Keyset, error) {
	if st == nil || sealKey == nil {
		return nil, errors.New("signing: Open needs a store and a seal key")
	}
	k := &Keyset{
		st:      st,
		seal:    sealKey,
		now:     time.Now,
		every:   DefaultRotateEvery,
		overlap: DefaultOverlap,
		log:     slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(k)
	}
	if k.optErr != nil {
		return nil, k.optErr
	}
	current, retired, err := k.load(ctx)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.current = current
	k.retired = k.live(retired, k.now())
	k.rebuildLocked()
	k.mu.Unlock()

	if current == nil {
		if err := k.Rotate(ctx); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// load reads and opens every stored key and returns the one that signs (nil when the store
// has none) and the retired ones, not yet filtered by their overlap.
func (k *Keyset) load(ctx context.Context) (current *key, retired []*key, err error) {
	var keys []*key
	err = k.st.View(ctx, func(tx Tx) error {
		stored, err := tx.Signing().Keys(ctx)
		if err != nil {
			return err
		}
		for _, sk := range stored {
			ky, err := k.decode(sk)
			if err != nil {
				return fmt.Errorf("key %q: %w", sk.KID, err)
			}
			keys = append(keys, ky)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("signing: load keys: %w", err)
	}
	for _, ky := range keys {
		if !ky.retired.IsZero() {
			retired = append(retired, ky)
			continue
		}
		// Rotation retires the old key in the same transaction that adds the new one, so two
		// current keys mean a store edited by hand. Keep the newest signing and publish the rest
		// as if retired when it was made.
		if current == nil || ky.created.After(current.created) {
			if current != nil {
				retired = append(retired, withRetired(current, ky.created))
			}
			current = ky
		} else {
			retired = append(retired, withRetired(ky, current.created))
		}
	}
	if countCurrent(keys) > 1 {
		k.log.Warn("signing: more than one current key in store; signing with the newest", "kid", current.kid)
	}
	return current, retired, nil
}

// Reload reads the keys from the store again and makes them the keyset's: the current key
// signs and the JWKS publishes the current and retired keys as stored. A server calls it
// when another server (the background lease's holder) rotated or pruned keys; Reload itself never
// writes. A store without a current key, or a key that does not open, is an error and leaves
// the keyset as it was: a replica keeps signing with the last key it could load rather than
// with none.
func (k *Keyset) Reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k.rotMu.Lock()
	defer k.rotMu.Unlock()
	current, retired, err := k.load(ctx)
	if err != nil {
		return err
	}
	if current == nil {
		return errors.New("signing: reload: the store holds no current key")
	}
	k.mu.Lock()
	k.current = current
	k.retired = k.live(retired, k.now())
	k.rebuildLocked()
	k.mu.Unlock()
	return nil
}

func countCurrent(keys []*key) int {
	n := 0
	for _, ky := range keys {
		if ky.retired.IsZero() {
			n++
		}
	}
	return n
}

func withRetired(ky *key, at time.Time) *key {
	c := *ky
	c.retired = at
	return &c
}

// decode opens one stored key and checks that it is the key its kid names.
func (k *Keyset) decode(sk StoredKey) (*key, error) {
	kid := sk.KID
	if sk.Alg != algES256 {
		return nil, fmt.Errorf("unsupported algorithm %q", sk.Alg)
	}
	der, err := k.seal.Open(sealPurpose, sk.SealedKey)
	if err != nil {
		return nil, fmt.Errorf("open sealed private key: %w", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, errors.New("private key is not ECDSA P-256")
	}
	ky, err := newKey(priv, sk.CreatedAt, sk.RetiredAt)
	if err != nil {
		return nil, err
	}
	// The seal binds only the purpose, not the kid: a sealed key moved under another kid would
	// otherwise sign with a kid verifiers resolve to a different public key.
	if ky.kid != kid {
		return nil, fmt.Errorf("stored under kid %q but its thumbprint is %q", kid, ky.kid)
	}
	return ky, nil
}

func newKey(priv *ecdsa.PrivateKey, created, retired time.Time) (*key, error) {
	jwk := jose.JSONWebKey{Key: &priv.PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint: %w", err)
	}
	ky := &key{
		kid:     base64.RawURLEncoding.EncodeToString(tp),
		created: created,
		retired: retired,
		priv:    priv,
		signers: map[string]jose.Signer{},
	}
	for _, typ := range []string{posture.TokenType, posture.SETType} {
		s, err := ky.newSigner(typ)
		if err != nil {
			return nil, err
		}
		ky.signers[typ] = s
	}
	return ky, nil
}

func (ky *key) newSigner(typ string) (jose.Signer, error) {
	s, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ky.priv, KeyID: ky.kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
	)
	if err != nil {
		return nil, fmt.Errorf("signing: build signer: %w", err)
	}
	return s, nil
}

// expiry is when a retired key leaves the JWKS.
func (k *Keyset) expiry(ky *key) time.Time { return ky.retired.Add(k.overlap) }

// live returns the retired keys still within their overlap at now, newest retirement first.
func (k *Keyset) live(retired []*key, now time.Time) []*key {
	out := make([]*key, 0, len(retired))
	for _, ky := range retired {
		if now.Before(k.expiry(ky)) {
			out = append(out, ky)
		}
	}
	slices.SortFunc(out, func(a, b *key) int { return b.retired.Compare(a.retired) })
	return out
}

// rebuildLocked recomputes the cached JWKS. k.mu must be held for writing.
func (k *Keyset) rebuildLocked() {
	set := jose.JSONWebKeySet{}
	k.jwksUntil = time.Time{}
	if k.current != nil {
		set.Keys = append(set.Keys, publicJWK(k.current))
	}
	for _, ky := range k.retired {
		set.Keys = append(set.Keys, publicJWK(ky))
		if exp := k.expiry(ky); k.jwksUntil.IsZero() || exp.Before(k.jwksUntil) {
			k.jwksUntil = exp
		}
	}
	if set.Keys == nil {
		set.Keys = []jose.JSONWebKey{}
	}
	b, err := json.Marshal(set)
	if err != nil {
		// Only P-256 public keys built here are marshalled; this cannot fail.
		panic("signing: marshal JWKS: " + err.Error())
	}
	k.jwks = b
}

func publicJWK(ky *key) jose.JSONWebKey {
	return jose.JSONWebKey{Key: &ky.priv.PublicKey, KeyID: ky.kid, Algorithm: algES256, Use: "sig"}
}

// Sign returns claims, marshalled with encoding/json, as a compact JWS signed with the current
// key using ES256, with the kid and typ headers set (typ is posture.TokenType or
// posture.SETType for what Hale issues).
func (k *Keyset) Sign(typ string, claims any) (string, error) {
	if typ == "" {
		return "", errors.New("signing: empty token type")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signing: marshal claims: %w", err)
	}
	k.mu.RLock()
	ky := k.current
	k.mu.RUnlock()
	if ky == nil {
		return "", errors.New("signing: no current key")
	}
	s, ok := ky.signers[typ]
	if !ok {
		if s, err = ky.newSigner(typ); err != nil {
			return "", err
		}
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: sign %s: %w", typ, err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("signing: serialize %s: %w", typ, err)
	}
	return out, nil
}

// JWKS returns the public keys as a JSON Web Key Set: the current key first, then the retired
// keys still within their overlap. The caller may keep or change the returned slice.
func (k *Keyset) JWKS(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return slices.Clone(k.cachedJWKS()), nil
}

// cachedJWKS returns the shared cached JWKS, rebuilding it first if a published retired key
// has left its overlap since it was built (so an expired key is not served while waiting for
// the next RotateIfDue to prune it). The result must not be changed.
func (k *Keyset) cachedJWKS() []byte {
	now := k.now()
	k.mu.RLock()
	b, until := k.jwks, k.jwksUntil
	k.mu.RUnlock()
	if until.IsZero() || now.Before(until) {
		return b
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.jwksUntil.IsZero() && !now.Before(k.jwksUntil) {
		k.retired = k.live(k.retired, now)
		k.rebuildLocked()
	}
	return k.jwks
}

// Rotate makes a new key current now and retires the old one, which stays published for the
// overlap. The new key is committed to the store before it signs anything.
func (k *Keyset) Rotate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k.rotMu.Lock()
	defer k.rotMu.Unlock()
	return k.rotateLocked(ctx)
}

// rotateLocked rotates; k.rotMu must be held.
func (k *Keyset) rotateLocked(ctx context.Context) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("signing: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("signing: marshal private key: %w", err)
	}
	now := k.now().UTC()
	// Store times without the monotonic reading so memory matches what a reopen loads.
	now = now.Round(0)
	next, err := newKey(priv, now, time.Time{})
	if err != nil {
		return err
	}
	rec := StoredKey{KID: next.kid, Alg: algES256, CreatedAt: now, SealedKey: k.seal.Seal(sealPurpose, der)}

	k.mu.RLock()
	prev, retired := k.current, k.retired
	k.mu.RUnlock()

	var prevRetired *key
	if prev != nil {
		prevRetired = withRetired(prev, now)
	}
	err = k.st.Update(ctx, func(tx Tx) error {
		r := tx.Signing()
		if err := r.PutKey(ctx, rec); err != nil {
			return err
		}
		if prev != nil {
			if err := retireStored(ctx, r, prev.kid, now); err != nil {
				return err
			}
		}
		_, err := k.pruneStored(ctx, r, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("signing: store new key: %w", err)
	}

	if prevRetired != nil {
		retired = append([]*key{prevRetired}, retired...)
	}
	k.mu.Lock()
	k.current = next
	k.retired = k.live(retired, now)
	k.rebuildLocked()
	k.mu.Unlock()

	attrs := []any{"kid", next.kid}
	if prev != nil {
		attrs = append(attrs, "retired_kid", prev.kid, "published_until", k.expiry(prevRetired))
	}
	k.log.Info("signing: rotated signing key", attrs...)
	return nil
}

// retireStored sets the retirement time on the stored record of kid.
func retireStored(ctx context.Context, r Repository, kid string, at time.Time) error {
	sk, err := r.Key(ctx, kid)
	if errors.Is(err, ErrKeyNotFound) {
		return fmt.Errorf("current key %q is missing from the store", kid)
	} else if err != nil {
		return err
	}
	sk.RetiredAt = at
	return r.PutKey(ctx, sk)
}

// pruneStored deletes retired keys whose overlap has ended at now and returns how many.
func (k *Keyset) pruneStored(ctx context.Context, r Repository, now time.Time) (int, error) {
	stored, err := r.Keys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, sk := range stored {
		if sk.RetiredAt.IsZero() || now.Before(sk.RetiredAt.Add(k.overlap)) {
			continue
		}
		if err := r.DeleteKey(ctx, sk.KID); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// RotateIfDue rotates when the current key is at least the rotation period old, and deletes
// retired keys past their overlap from the store.
func (k *Keyset) RotateIfDue(ctx context.Context) (rotated bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k.rotMu.Lock()
	defer k.rotMu.Unlock()

	now := k.now()
	k.mu.RLock()
	cur := k.current
	k.mu.RUnlock()
	if cur == nil || now.Sub(cur.created) >= k.every {
		// rotateLocked prunes the store in the same transaction.
		return true, k.rotateLocked(ctx)
	}

	var n int
	err = k.st.Update(ctx, func(tx Tx) error {
		var err error
		n, err = k.pruneStored(ctx, tx.Signing(), now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("signing: prune retired keys: %w", err)
	}
	k.mu.Lock()
	if live := k.live(k.retired, now); len(live) != len(k.retired) {
		k.retired = live
		k.rebuildLocked()
	}
	k.mu.Unlock()
	if n > 0 {
		k.log.Info("signing: deleted retired signing keys past overlap", "count", n)
	}
	return false, nil
}

// Run calls RotateIfDue now and then every tenth of the rotation period (at most hourly) until
// ctx is done. Errors are logged; the current key keeps signing.
func (k *Keyset) Run(ctx context.Context) {
	interval := min(k.every/10, maxRunInterval)
	if interval <= 0 {
		interval = time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := k.RotateIfDue(ctx); err != nil && ctx.Err() == nil {
			k.log.Error("signing: rotate signing key", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
