// Package enroll issues and redeems Hale's enrollment tokens, renders and signs Apple enrollment
// profiles, and decodes the enrollment request bodies of the admin and agent APIs.
//
// An enrollment token is one-time, expiring and scoped to an owner, a group and a platform. Only
// its SHA-256 hash is stored: the token carries 256 random bits, so a fast hash is enough and the
// hash doubles as the lookup key. Apple devices redeem the token when they fetch their profile,
// which then carries a one-time SCEP challenge bound to the same enrollment.
package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/text"
)

// Platform is how a device enrolls: through Apple MDM or through the mdmagent daemon.
type Platform string

// The platforms an enrollment can be scoped to.
const (
	PlatformApple Platform = "apple"
	PlatformAgent Platform = "agent"
)

// Valid reports whether p is a known platform.
func (p Platform) Valid() bool { return p == PlatformApple || p == PlatformAgent }

// State is the lifecycle state of an enrollment, derived from its timestamps.
type State string

// The enrollment states. A revoked enrollment stays revoked even if it was used or has expired:
// the admin's decision is the most useful thing to show.
const (
	StatePending State = "pending"
	StateUsed    State = "used"
	StateExpired State = "expired"
	StateRevoked State = "revoked"
)

// TTL bounds. A token that lives longer than a month is a standing credential, not an invitation.
const (
	DefaultTTL = 24 * time.Hour
	MinTTL     = time.Minute
	MaxTTL     = 30 * 24 * time.Hour
)

// DefaultChallengeTTL is how long a SCEP challenge stays valid after the profile was fetched.
const DefaultChallengeTTL = time.Hour

// maxText bounds owner, group, creator and device identifiers.
const maxText = 128

// Errors returned by Redeem and the challenge methods. The HTTP layer should answer all of them
// with the same status (and log which one) so that a guesser learns nothing about other tokens.
var (
	ErrUnknown       = errors.New("enroll: unknown enrollment token or challenge")
	ErrExpired       = errors.New("enroll: enrollment token or challenge expired; create a new enrollment")
	ErrRevoked       = errors.New("enroll: enrollment revoked")
	ErrUsed          = errors.New("enroll: enrollment token or challenge already used")
	ErrWrongPlatform = errors.New("enroll: enrollment token is for another platform")
	// ErrInUse is returned for a SCEP challenge another request holds while it is being issued
	// a certificate.
	ErrInUse = errors.New("enroll: challenge in use by another request; retry shortly")
	// ErrNotFound is returned by Get, Revoke, IssueChallenge and BindDevice for an unknown id.
	ErrNotFound = errors.New("enroll: no such enrollment")
	// ErrNotRedeemed is returned when a step needs a redeemed enrollment and it is still pending.
	ErrNotRedeemed = errors.New("enroll: enrollment has not been redeemed")
	// ErrAlreadyBound is returned by BindDevice when the enrollment belongs to another device.
	ErrAlreadyBound = errors.New("enroll: enrollment already bound to another device")
	// ErrInvalid wraps every validation error of a request; the HTTP layer answers 400.
	ErrInvalid = errors.New("enroll: invalid request")
)

// Enrollment is a stored enrollment record. It never holds the token.
type Enrollment struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	Group     string    `json:"group"`
	Platform  Platform  `json:"platform"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	// DeviceID is the inventory device that used the enrollment; for Apple it is set by BindDevice
	// once the device checks in, since the profile fetch does not yet identify the device.
	DeviceID  string    `json:"device_id,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// State is computed when the record is read, never stored.
	State State `json:"state"`
}

// StateAt returns the state of e at now.
func (e *Enrollment) StateAt(now time.Time) State {
	switch {
	case !e.RevokedAt.IsZero():
		return StateRevoked
	case !e.UsedAt.IsZero():
		return StateUsed
	case !now.Before(e.ExpiresAt):
		return StateExpired
	}
	return StatePending
}

// record is what is stored: the enrollment plus the hash of its token.
type record struct {
	Enrollment
	TokenHash string `json:"token_hash"`
}

var (
	bucketEnrollments = []byte("enrollments")
	bucketTokens      = []byte("enrollment_tokens")     // sha256(token) -> enrollment id
	bucketChallenges  = []byte("enrollment_challenges") // sha256(challenge) -> challenge
)

// Token and challenge prefixes make a leaked secret recognisable (secret scanners, logs).
const (
	tokenPrefix     = "hale_enr_"
	challengePrefix = "hale_scep_"
	secretBytes     = 32
)

// Store keeps enrollments and SCEP challenges in bbolt buckets.
type Store struct {
	db            *bbolt.DB
	now           func() time.Time
	challengeTTL  time.Duration
	challengeHold time.Duration
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithChallengeTTL sets how long a SCEP challenge stays valid (default DefaultChallengeTTL).
func WithChallengeTTL(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.challengeTTL = d
		}
	}
}

// WithChallengeHold sets how long HoldChallenge holds a challenge for one issuance before
// another request may take it (default DefaultChallengeHold).
func WithChallengeHold(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.challengeHold = d
		}
	}
}

// New returns a Store on db, creating its buckets.
func New(db *bbolt.DB, opts ...Option) (*Store, error) {
	s := &Store{db: db, now: time.Now, challengeTTL: DefaultChallengeTTL, challengeHold: DefaultChallengeHold}
	for _, o := range opts {
		o(s)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketEnrollments, bucketTokens, bucketChallenges} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("enroll: create buckets: %w", err)
	}
	return s, nil
}

// Request describes an enrollment to create.
type Request struct {
	Owner     string
	Group     string
	Platform  Platform
	TTL       time.Duration // zero: DefaultTTL
	CreatedBy string
}

// normalize trims and validates r, filling defaults. Errors wrap ErrInvalid.
func (r Request) normalize() (Request, error) {
	r.Owner, r.Group, r.CreatedBy = strings.TrimSpace(r.Owner), strings.TrimSpace(r.Group), strings.TrimSpace(r.CreatedBy)
	if err := checkText("owner", r.Owner, true); err != nil {
		return r, err
	}
	if err := checkText("group", r.Group, true); err != nil {
		return r, err
	}
	if err := checkText("created_by", r.CreatedBy, false); err != nil {
		return r, err
	}
	if !r.Platform.Valid() {
		return r, fmt.Errorf("%w: platform %q is not %q or %q", ErrInvalid, r.Platform, PlatformApple, PlatformAgent)
	}
	if r.TTL == 0 {
		r.TTL = DefaultTTL
	}
	if r.TTL < MinTTL || r.TTL > MaxTTL {
		return r, fmt.Errorf("%w: ttl %s is outside %s to %s", ErrInvalid, r.TTL, MinTTL, MaxTTL)
	}
	return r, nil
}

// checkText enforces the bounds every free-text identifier shares: valid UTF-8, printable, at most
// maxText bytes.
func checkText(field, s string, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	case len(s) > maxText:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, field, maxText)
	case !text.Printable(s):
		return fmt.Errorf("%w: %s must be printable UTF-8 text", ErrInvalid, field)
	}
	return nil
}

// Create makes an enrollment and returns its record and the token, which is never available
// again. The record is committed before Create returns.
func (s *Store) Create(ctx context.Context, req Request) (*Enrollment, string, error) {
	req, err := req.normalize()
	if err != nil {
		return nil, "", err
	}
	token := tokenPrefix + randomHex(secretBytes)
	now := s.now().UTC()
	rec := &record{
		Enrollment: Enrollment{
			ID:        "e_" + randomHex(8),
			Owner:     req.Owner,
			Group:     req.Group,
			Platform:  req.Platform,
			CreatedAt: now,
			CreatedBy: req.CreatedBy,
			ExpiresAt: now.Add(req.TTL),
		},
		TokenHash: hashSecret(token),
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketEnrollments).Get([]byte(rec.ID)) != nil {
			return errors.New("enroll: enrollment id collision; retry")
		}
		if err := tx.Bucket(bucketTokens).Put(hashKey(rec.TokenHash), []byte(rec.ID)); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		return nil, "", fmt.Errorf("enroll: create enrollment: %w", err)
	}
	return s.public(rec), token, nil
}

// Get returns the enrollment with id.
func (s *Store) Get(ctx context.Context, id string) (*Enrollment, error) {
	var rec *record
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		rec, err = getRecord(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.public(rec), nil
}

// List returns every enrollment, newest first.
func (s *Store) List(ctx context.Context) ([]*Enrollment, error) {
	var out []*Enrollment
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketEnrollments).ForEach(func(k, v []byte) error {
			rec := new(record)
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("enroll: decode enrollment %q: %w", k, err)
			}
			out = append(out, s.public(rec))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *Enrollment) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// Revoke marks the enrollment revoked: its token can no longer be redeemed and its outstanding
// SCEP challenges can no longer be consumed. Revoking twice keeps the first time.
func (s *Store) Revoke(ctx context.Context, id string) (*Enrollment, error) {
	return s.update(id, func(rec *record) error {
		if rec.RevokedAt.IsZero() {
			rec.RevokedAt = s.now().UTC()
		}
		return nil
	})
}

// Redeem checks a presented token and marks its enrollment used by deviceID, in one transaction:
// of two concurrent redemptions exactly one succeeds and the other gets ErrUsed. deviceID may be
// empty when the device is not known yet (Apple profile fetch); see BindDevice.
//
// A wrong platform does not consume the token.
func (s *Store) Redeem(ctx context.Context, token string, platform Platform, deviceID string) (*Enrollment, error) {
	if err := checkText("device id", deviceID, false); err != nil {
		return nil, err
	}
	hash, ok := tokenHash(token, tokenPrefix)
	if !ok {
		return nil, ErrUnknown
	}
	var rec *record
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		rec, err = s.redeemTx(tx, hash, platform, deviceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.public(rec), nil
}

// RedeemForProfile is the Apple profile fetch: it redeems an Apple token and issues the SCEP
// challenge for the profile in one transaction, so a failure leaves the token unspent.
func (s *Store) RedeemForProfile(ctx context.Context, token string) (*Enrollment, string, error) {
	hash, ok := tokenHash(token, tokenPrefix)
	if !ok {
		return nil, "", ErrUnknown
	}
	secret := challengePrefix + randomHex(secretBytes)
	var rec *record
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		if rec, err = s.redeemTx(tx, hash, PlatformApple, ""); err != nil {
			return err
		}
		return s.issueChallengeTx(tx, rec.ID, secret)
	})
	if err != nil {
		return nil, "", err
	}
	return s.public(rec), secret, nil
}

func (s *Store) redeemTx(tx *bbolt.Tx, hash string, platform Platform, deviceID string) (*record, error) {
	id := tx.Bucket(bucketTokens).Get(hashKey(hash))
	if id == nil {
		return nil, ErrUnknown
	}
	rec, err := getRecord(tx, string(id))
	if err != nil {
		return nil, err
	}
	// The lookup matched on the hash already; the constant-time compare keeps the check honest
	// should the index and the record ever disagree.
	if subtle.ConstantTimeCompare([]byte(rec.TokenHash), []byte(hash)) != 1 {
		return nil, ErrUnknown
	}
	if err := usable(rec, s.now()); err != nil {
		return nil, err
	}
	if rec.Platform != platform {
		return nil, ErrWrongPlatform
	}
	rec.UsedAt = s.now().UTC()
	rec.DeviceID = deviceID
	return rec, putRecord(tx, rec)
}

// usable reports why a pending enrollment cannot be redeemed, or nil.
func usable(rec *record, now time.Time) error {
	switch rec.StateAt(now) {
	case StateRevoked:
		return ErrRevoked
	case StateUsed:
		return ErrUsed
	case StateExpired:
		return ErrExpired
	}
	return nil
}

// BindDevice records which device used a redeemed enrollment. Binding the same device again is a
// no-op; binding a different one fails with ErrAlreadyBound.
func (s *Store) BindDevice(ctx context.Context, enrollmentID, deviceID string) (*Enrollment, error) {
	if deviceID == "" {
		return nil, fmt.Errorf("%w: device id is required", ErrInvalid)
	}
	if err := checkText("device id", deviceID, true); err != nil {
		return nil, err
	}
	return s.update(enrollmentID, func(rec *record) error {
		switch {
		case !rec.RevokedAt.IsZero():
			return ErrRevoked
		case rec.UsedAt.IsZero():
			return ErrNotRedeemed
		case rec.DeviceID != "" && rec.DeviceID != deviceID:
			return ErrAlreadyBound
		}
		rec.DeviceID = deviceID
		return nil
	})
}

// update applies fn to the stored record with id in one transaction.
func (s *Store) update(id string, fn func(*record) error) (*Enrollment, error) {
	var rec *record
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		if rec, err = getRecord(tx, id); err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
		return putRecord(tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return s.public(rec), nil
}

// public returns the enrollment part of rec with its state at the store's now.
func (s *Store) public(rec *record) *Enrollment {
	e := rec.Enrollment
	e.State = e.StateAt(s.now())
	return &e
}

func getRecord(tx *bbolt.Tx, id string) (*record, error) {
	if id == "" || len(id) > maxText {
		return nil, ErrNotFound
	}
	v := tx.Bucket(bucketEnrollments).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	rec := new(record)
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("enroll: decode enrollment %q: %w", id, err)
	}
	return rec, nil
}

func putRecord(tx *bbolt.Tx, rec *record) error {
	stored := *rec
	stored.State = "" // derived on read
	v, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketEnrollments).Put([]byte(rec.ID), v)
}

// tokenHash checks the shape of a presented secret and returns its hash. Malformed secrets are
// rejected before touching the database.
func tokenHash(secret, prefix string) (string, bool) {
	hexPart, ok := strings.CutPrefix(secret, prefix)
	if !ok || len(hexPart) != 2*secretBytes {
		return "", false
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return "", false
	}
	return hashSecret(secret), true
}

func hashKey(hexHash string) []byte {
	k, _ := hex.DecodeString(hexHash)
	return k
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+); it aborts instead.
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ProfileURL returns where an Apple device fetches its enrollment profile: baseURL (the server's
// external https URL) + "/enroll/apple/" + token. It contains the token: show it once, never log it.
func ProfileURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/enroll/apple/" + token
}
