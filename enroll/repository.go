package enroll

import (
	"context"
	"time"
)

// Record is an enrollment as it is kept: the enrollment and the hash of its token. Its State is
// derived when it is read, never kept.
type Record struct {
	Enrollment
	// TokenHash is the hex SHA-256 of the enrollment token, the only form the token is kept in.
	TokenHash string
}

// Challenge is a SCEP challenge as it is kept, under the hex SHA-256 of its secret.
type Challenge struct {
	// EnrollmentID is the redeemed Apple enrollment the challenge belongs to.
	EnrollmentID string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	// UsedAt is when a certificate was issued for it; zero while it is unspent.
	UsedAt time.Time
	// HeldBy names the request that holds the challenge while it is issued a certificate, until
	// HeldUntil.
	HeldBy    string
	HeldUntil time.Time
}

// Repository keeps enrollment records, the index from token hashes to them, and SCEP challenges.
// It is storage only: the rules are this package's functions over it. Values handed in and out
// are copies.
type Repository interface {
	// Get returns the record with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)
	// List returns every record, in no particular order.
	List(ctx context.Context) ([]*Record, error)
	// Add stores a new record and indexes it under its TokenHash. It fails with ErrConflict when
	// a record with its ID is stored already.
	Add(ctx context.Context, rec *Record) error
	// Put replaces the stored record with rec.ID. The token index is left alone: a record's
	// TokenHash never changes.
	Put(ctx context.Context, rec *Record) error
	// LookupToken returns the ID of the record indexed under tokenHash, or ErrUnknown.
	LookupToken(ctx context.Context, tokenHash string) (string, error)
	// Challenge returns the challenge kept under hash, or ErrUnknown.
	Challenge(ctx context.Context, hash string) (*Challenge, error)
	// PutChallenge keeps c under hash, replacing what was there.
	PutChallenge(ctx context.Context, hash string, c *Challenge) error
	// DeleteExpiredChallenges deletes every challenge that expires at or before cutoff, and every
	// one it cannot read back (that one can never be used either), and returns how many.
	DeleteExpiredChallenges(ctx context.Context, cutoff time.Time) (int, error)
}

// Tx is what enrollment's units of work use: the Repository of one transaction.
type Tx interface {
	Enrollments() Repository
}

// Store runs enrollment's units of work; storage.Scope narrows Hale's store to one.
type Store interface {
	// View runs fn on one consistent snapshot; fn must not write.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in one read-write transaction that commits when fn returns nil.
	Update(ctx context.Context, fn func(Tx) error) error
}
