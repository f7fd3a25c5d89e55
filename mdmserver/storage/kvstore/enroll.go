package kvstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/enroll"
)

var (
	// BucketEnrollments holds enrollment ID → enrollmentValue JSON.
	BucketEnrollments = []byte("enrollments")
	// BucketEnrollmentTokens holds the raw SHA-256 of a token (32 bytes) → enrollment ID.
	BucketEnrollmentTokens = []byte("enrollment_tokens")
	// BucketEnrollmentChallenges holds the raw SHA-256 of a SCEP challenge → challengeValue JSON.
	BucketEnrollmentChallenges = []byte("enrollment_challenges")
)

// enrollBuckets are the buckets of enrollments and their SCEP challenges.
var enrollBuckets = [][]byte{BucketEnrollments, BucketEnrollmentTokens, BucketEnrollmentChallenges}

// enrollmentValue is an enrollment as stored. Its fields, their order and their tags are the
// format existing files hold: State is always stored empty (it is derived on read) and kept
// only so that the bytes stay what they were.
type enrollmentValue struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	Group     string    `json:"group"`
	Platform  string    `json:"platform"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	DeviceID  string    `json:"device_id,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	State     string    `json:"state"`
	TokenHash string    `json:"token_hash"`
	// BYOD and ManagedAppleID: absent in records written before account-driven enrollment.
	BYOD           bool   `json:"byod,omitempty"`
	ManagedAppleID string `json:"managed_apple_id,omitempty"`
	// The reusable credential's fields: absent in one-time enrollments and older records.
	Reusable   bool   `json:"reusable,omitempty"`
	OS         string `json:"os,omitempty"`
	MaxDevices int    `json:"max_devices,omitempty"`
	Uses       int    `json:"uses,omitempty"`
}

// challengeValue is a SCEP challenge as stored.
type challengeValue struct {
	EnrollmentID string    `json:"enrollment_id"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	UsedAt       time.Time `json:"used_at,omitzero"`
	HeldBy       string    `json:"held_by,omitempty"`
	HeldUntil    time.Time `json:"held_until,omitzero"`
}

// Enrollments returns the enrollments of this transaction.
func (t *tx) Enrollments() enroll.Repository { return enrollRepo{t} }

// enrollRepo is enroll.Repository on one key-value transaction.
type enrollRepo struct{ t *tx }

// Get returns the enrollment stored under id.
func (r enrollRepo) Get(ctx context.Context, id string) (*enroll.Record, error) {
	b, err := bucket(r.t.tx, BucketEnrollments)
	if err != nil {
		return nil, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, enroll.ErrNotFound
	}
	return decodeEnrollment([]byte(id), v)
}

// List returns every enrollment in ID order.
func (r enrollRepo) List(ctx context.Context) ([]*enroll.Record, error) {
	b, err := bucket(r.t.tx, BucketEnrollments)
	if err != nil {
		return nil, err
	}
	var out []*enroll.Record
	err = b.ForEach(func(k, v []byte) error {
		rec, err := decodeEnrollment(k, v)
		if err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

// Add stores a new enrollment and indexes its token hash.
func (r enrollRepo) Add(ctx context.Context, rec *enroll.Record) error {
	b, err := bucket(r.t.tx, BucketEnrollments)
	if err != nil {
		return err
	}
	if b.Get([]byte(rec.ID)) != nil {
		return enroll.ErrConflict
	}
	key, err := hashKey(rec.TokenHash)
	if err != nil {
		return fmt.Errorf("kvstore: enrollment %q: token hash: %w", rec.ID, err)
	}
	tokens, err := bucket(r.t.tx, BucketEnrollmentTokens)
	if err != nil {
		return err
	}
	if err := tokens.Put(key, []byte(rec.ID)); err != nil {
		return err
	}
	return r.Put(ctx, rec)
}

// Put stores rec under its ID.
func (r enrollRepo) Put(ctx context.Context, rec *enroll.Record) error {
	b, err := bucket(r.t.tx, BucketEnrollments)
	if err != nil {
		return err
	}
	if rec.ID == "" {
		return fmt.Errorf("kvstore: enrollment without an id")
	}
	v, err := json.Marshal(enrollmentValue{
		ID: rec.ID, Owner: rec.Owner, Group: rec.Group, Platform: string(rec.Platform),
		CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy, ExpiresAt: rec.ExpiresAt, UsedAt: rec.UsedAt,
		DeviceID: rec.DeviceID, RevokedAt: rec.RevokedAt, TokenHash: rec.TokenHash,
		BYOD: rec.BYOD, ManagedAppleID: rec.ManagedAppleID,
		Reusable: rec.Reusable, OS: rec.OS, MaxDevices: rec.MaxDevices, Uses: rec.Uses,
	})
	if err != nil {
		return err
	}
	return b.Put([]byte(rec.ID), v)
}

// LookupToken returns the enrollment ID indexed under tokenHash.
func (r enrollRepo) LookupToken(ctx context.Context, tokenHash string) (string, error) {
	b, err := bucket(r.t.tx, BucketEnrollmentTokens)
	if err != nil {
		return "", err
	}
	key, err := hashKey(tokenHash)
	if err != nil {
		return "", enroll.ErrUnknown
	}
	id := b.Get(key)
	if id == nil {
		return "", enroll.ErrUnknown
	}
	return string(id), nil // string() copies out of the transaction's memory
}

// Challenge returns the SCEP challenge stored under hash.
func (r enrollRepo) Challenge(ctx context.Context, hash string) (*enroll.Challenge, error) {
	b, err := bucket(r.t.tx, BucketEnrollmentChallenges)
	if err != nil {
		return nil, err
	}
	key, err := hashKey(hash)
	if err != nil {
		return nil, enroll.ErrUnknown
	}
	v := b.Get(key)
	if v == nil {
		return nil, enroll.ErrUnknown
	}
	var c challengeValue
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("enroll: decode challenge: %w", err)
	}
	return &enroll.Challenge{EnrollmentID: c.EnrollmentID, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
		UsedAt: c.UsedAt, HeldBy: c.HeldBy, HeldUntil: c.HeldUntil}, nil
}

// PutChallenge stores c under hash.
func (r enrollRepo) PutChallenge(ctx context.Context, hash string, c *enroll.Challenge) error {
	b, err := bucket(r.t.tx, BucketEnrollmentChallenges)
	if err != nil {
		return err
	}
	key, err := hashKey(hash)
	if err != nil {
		return fmt.Errorf("kvstore: challenge hash: %w", err)
	}
	v, err := json.Marshal(challengeValue{EnrollmentID: c.EnrollmentID, CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
		UsedAt: c.UsedAt, HeldBy: c.HeldBy, HeldUntil: c.HeldUntil})
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// DeleteExpiredChallenges deletes the challenges that expire at or before cutoff, and those that
// do not decode.
func (r enrollRepo) DeleteExpiredChallenges(ctx context.Context, cutoff time.Time) (int, error) {
	b, err := bucket(r.t.tx, BucketEnrollmentChallenges)
	if err != nil {
		return 0, err
	}
	var stale [][]byte
	err = b.ForEach(func(k, v []byte) error {
		var c challengeValue
		if err := json.Unmarshal(v, &c); err != nil || !c.ExpiresAt.After(cutoff) {
			stale = append(stale, slices.Clone(k))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Deleting while iterating a cursor skips keys; delete after the scan.
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(stale), nil
}

// decodeEnrollment reads a stored enrollment. json.Unmarshal copies, so nothing returned points
// into the transaction's memory.
func decodeEnrollment(id, v []byte) (*enroll.Record, error) {
	var ev enrollmentValue
	if err := json.Unmarshal(v, &ev); err != nil {
		return nil, fmt.Errorf("enroll: decode enrollment %q: %w", id, err)
	}
	return &enroll.Record{
		Enrollment: enroll.Enrollment{
			ID: ev.ID, Owner: ev.Owner, Group: ev.Group, Platform: enroll.Platform(ev.Platform),
			CreatedAt: ev.CreatedAt, CreatedBy: ev.CreatedBy, ExpiresAt: ev.ExpiresAt, UsedAt: ev.UsedAt,
			DeviceID: ev.DeviceID, RevokedAt: ev.RevokedAt, BYOD: ev.BYOD, ManagedAppleID: ev.ManagedAppleID,
			Reusable: ev.Reusable, OS: ev.OS, MaxDevices: ev.MaxDevices, Uses: ev.Uses,
		},
		TokenHash: ev.TokenHash,
	}, nil
}

// hashKey is the bucket key of a hex SHA-256: its 32 raw bytes.
func hashKey(hexHash string) ([]byte, error) {
	k, err := hex.DecodeString(hexHash)
	if err != nil {
		return nil, err
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("%d bytes, want 32", len(k))
	}
	return k, nil
}
