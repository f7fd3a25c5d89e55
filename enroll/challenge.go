package enroll

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// DefaultChallengeHold is how long HoldChallenge holds a SCEP challenge for one issuance: far
// longer than signing takes, short enough that a crash in the middle does not lose the
// challenge for good.
const DefaultChallengeHold = time.Minute

// challenge is a stored SCEP challenge, keyed by its hash.
type challenge struct {
	EnrollmentID string    `json:"enrollment_id"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	UsedAt       time.Time `json:"used_at,omitzero"`
	// HeldBy names the request that holds the challenge while it is issued a certificate, until
	// HeldUntil.
	HeldBy    string    `json:"held_by,omitempty"`
	HeldUntil time.Time `json:"held_until,omitzero"`
}

// Hold is a SCEP challenge held for one certificate issuance: HoldChallenge makes it, and
// SpendChallenge (a certificate was issued) or ReleaseChallenge (none was) ends it.
type Hold struct {
	// Enrollment is the enrollment the challenge belongs to.
	Enrollment *Enrollment
	key        []byte // the challenge's key in its bucket
	id         string // names this holder in the stored challenge
}

// IssueChallenge creates a one-time SCEP challenge bound to a redeemed Apple enrollment and
// returns it; only its hash is stored. It expires after the store's challenge TTL.
func (s *Store) IssueChallenge(ctx context.Context, enrollmentID string) (string, error) {
	secret := challengePrefix + randomHex(secretBytes)
	err := s.db.Update(func(tx *bbolt.Tx) error { return s.issueChallengeTx(tx, enrollmentID, secret) })
	if err != nil {
		return "", err
	}
	return secret, nil
}

func (s *Store) issueChallengeTx(tx *bbolt.Tx, enrollmentID, secret string) error {
	rec, err := getRecord(tx, enrollmentID)
	if err != nil {
		return err
	}
	switch {
	case !rec.RevokedAt.IsZero():
		return ErrRevoked
	case rec.UsedAt.IsZero():
		return ErrNotRedeemed
	case rec.Platform != PlatformApple:
		return ErrWrongPlatform
	}
	now := s.now().UTC()
	v, err := json.Marshal(challenge{EnrollmentID: rec.ID, CreatedAt: now, ExpiresAt: now.Add(s.challengeTTL)})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketChallenges).Put(hashKey(hashSecret(secret)), v)
}

// HoldChallenge checks a SCEP challenge and holds it for one issuance. The challenge is not
// spent: a request the CA then refuses (a CSR for the wrong subject) releases it, and only a
// certificate actually issued spends it (SpendChallenge). While it is held, other requests get
// ErrInUse, so two concurrent requests with one challenge get one certificate between them. A
// hold not ended within the store's hold time (a crash mid-issuance) lapses.
//
// An unknown challenge fails with ErrUnknown, a spent one with ErrUsed, an expired one with
// ErrExpired, one of a since revoked enrollment with ErrRevoked.
func (s *Store) HoldChallenge(ctx context.Context, secret string) (*Hold, error) {
	hash, ok := tokenHash(secret, challengePrefix)
	if !ok {
		return nil, ErrUnknown
	}
	h := &Hold{key: hashKey(hash), id: randomHex(16)}
	err := s.updateChallenge(h.key, func(tx *bbolt.Tx, c *challenge) error {
		now := s.now()
		switch {
		case !c.UsedAt.IsZero():
			return ErrUsed
		case !now.Before(c.ExpiresAt):
			return ErrExpired
		case c.HeldBy != "" && now.Before(c.HeldUntil):
			return ErrInUse
		}
		rec, err := getRecord(tx, c.EnrollmentID)
		if err != nil {
			return err
		}
		if !rec.RevokedAt.IsZero() {
			return ErrRevoked
		}
		h.Enrollment = s.public(rec)
		c.HeldBy, c.HeldUntil = h.id, now.Add(s.challengeHold).UTC()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// SpendChallenge marks a held challenge used once its certificate was issued, and runs also (when
// not nil) in the same transaction. It fails, and nothing is written, when the hold lapsed and
// another request took the challenge (ErrInUse, or ErrUsed when that one spent it) or the
// enrollment was revoked meanwhile (ErrRevoked): the caller must then not hand out the
// certificate.
func (s *Store) SpendChallenge(ctx context.Context, h *Hold, also func(tx *bbolt.Tx, e *Enrollment) error) error {
	return s.updateChallenge(h.key, func(tx *bbolt.Tx, c *challenge) error {
		switch {
		case !c.UsedAt.IsZero():
			return ErrUsed
		case c.HeldBy != h.id:
			return ErrInUse
		}
		rec, err := getRecord(tx, c.EnrollmentID)
		if err != nil {
			return err
		}
		if !rec.RevokedAt.IsZero() {
			return ErrRevoked
		}
		c.UsedAt, c.HeldBy, c.HeldUntil = s.now().UTC(), "", time.Time{}
		if also != nil {
			return also(tx, s.public(rec))
		}
		return nil
	})
}

// ReleaseChallenge ends a hold without spending the challenge (no certificate was issued), so
// the device can try again. Releasing a hold that lapsed and was taken over changes nothing.
func (s *Store) ReleaseChallenge(ctx context.Context, h *Hold) error {
	return s.updateChallenge(h.key, func(_ *bbolt.Tx, c *challenge) error {
		if c.HeldBy == h.id && c.UsedAt.IsZero() {
			c.HeldBy, c.HeldUntil = "", time.Time{}
		}
		return nil
	})
}

// updateChallenge applies fn to the stored challenge at key in one transaction and stores the
// result; an error from fn writes nothing.
func (s *Store) updateChallenge(key []byte, fn func(*bbolt.Tx, *challenge) error) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChallenges)
		v := b.Get(key)
		if v == nil {
			return ErrUnknown
		}
		var c challenge
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("enroll: decode challenge: %w", err)
		}
		if err := fn(tx, &c); err != nil {
			return err
		}
		nv, err := json.Marshal(c)
		if err != nil {
			return err
		}
		return b.Put(key, nv)
	})
}

// PruneChallenges deletes challenges that expired before cutoff, used or not, and returns how many
// it removed. Call it periodically; challenges are useless after expiry.
func (s *Store) PruneChallenges(ctx context.Context, cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketChallenges)
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var ch challenge
			// An undecodable challenge can never be consumed either: prune it too.
			if err := json.Unmarshal(v, &ch); err != nil || !ch.ExpiresAt.After(cutoff) {
				stale = append(stale, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Deleting while iterating a bbolt cursor skips keys; delete after the scan.
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	return n, err
}
