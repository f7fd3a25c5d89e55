package enroll

import (
	"context"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// DefaultChallengeHold is how long HoldChallenge holds a SCEP challenge for one issuance: far
// longer than signing takes, short enough that a crash in the middle does not lose the
// challenge for good.
const DefaultChallengeHold = time.Minute

// Hold is a SCEP challenge held for one certificate issuance: HoldChallenge makes it, and
// SpendChallenge (a certificate was issued) or ReleaseChallenge (none was) ends it.
type Hold struct {
	// Enrollment is the enrollment the challenge belongs to.
	Enrollment *Enrollment
	hash       string // the challenge's hash, its key in the Repository
	id         string // names this holder in the kept challenge
}

// IssueChallenge creates a one-time SCEP challenge bound to a redeemed Apple enrollment, valid
// for ttl from now, and returns it; only its hash is kept.
func IssueChallenge(ctx context.Context, repo Repository, enrollmentID string, now time.Time, ttl time.Duration) (string, error) {
	rec, err := get(ctx, repo, enrollmentID)
	if err != nil {
		return "", err
	}
	return issueChallenge(ctx, repo, rec, now, ttl)
}

func issueChallenge(ctx context.Context, repo Repository, rec *Record, now time.Time, ttl time.Duration) (string, error) {
	switch {
	case !rec.RevokedAt.IsZero():
		return "", ErrRevoked
	case rec.UsedAt.IsZero():
		return "", ErrNotRedeemed
	case rec.Platform != PlatformApple:
		return "", ErrWrongPlatform
	}
	secret := challengePrefix + randid.Hex(secretBytes)
	now = now.UTC()
	c := &Challenge{EnrollmentID: rec.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := repo.PutChallenge(ctx, hashSecret(secret), c); err != nil {
		return "", err
	}
	return secret, nil
}

// HoldChallenge checks a SCEP challenge and holds it for one issuance, until now+hold. The
// challenge is not spent: a request the CA then refuses (a CSR for the wrong subject) releases
// it, and only a certificate actually issued spends it (SpendChallenge). While it is held, other
// requests get ErrInUse, so two concurrent requests with one challenge get one certificate
// between them. A hold not ended in time (a crash mid-issuance) lapses.
//
// An unknown challenge fails with ErrUnknown, a spent one with ErrUsed, an expired one with
// ErrExpired, one of a since revoked enrollment with ErrRevoked.
func HoldChallenge(ctx context.Context, repo Repository, secret string, now time.Time, hold time.Duration) (*Hold, error) {
	hash, ok := tokenHash(secret, challengePrefix)
	if !ok {
		return nil, ErrUnknown
	}
	h := &Hold{hash: hash, id: randid.Hex(16)}
	err := changeChallenge(ctx, repo, hash, func(c *Challenge) error {
		switch {
		case !c.UsedAt.IsZero():
			return ErrUsed
		case !now.Before(c.ExpiresAt):
			return ErrExpired
		case c.HeldBy != "" && now.Before(c.HeldUntil):
			return ErrInUse
		}
		rec, err := get(ctx, repo, c.EnrollmentID)
		if err != nil {
			return err
		}
		if !rec.RevokedAt.IsZero() {
			return ErrRevoked
		}
		h.Enrollment = rec.at(now)
		c.HeldBy, c.HeldUntil = h.id, now.Add(hold).UTC()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// SpendChallenge marks a held challenge used at now, once its certificate was issued, and
// returns its enrollment. It fails, and nothing is written, when the hold lapsed and another
// request took the challenge (ErrInUse, or ErrUsed when that one spent it) or the enrollment was
// revoked meanwhile (ErrRevoked): the caller must then not hand out the certificate. What the
// caller writes in the same unit of work (the device, its audit entry) commits with the spend.
func SpendChallenge(ctx context.Context, repo Repository, h *Hold, now time.Time) (*Enrollment, error) {
	var e *Enrollment
	err := changeChallenge(ctx, repo, h.hash, func(c *Challenge) error {
		switch {
		case !c.UsedAt.IsZero():
			return ErrUsed
		case c.HeldBy != h.id:
			return ErrInUse
		}
		rec, err := get(ctx, repo, c.EnrollmentID)
		if err != nil {
			return err
		}
		if !rec.RevokedAt.IsZero() {
			return ErrRevoked
		}
		c.UsedAt, c.HeldBy, c.HeldUntil = now.UTC(), "", time.Time{}
		e = rec.at(now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// ReleaseChallenge ends a hold without spending the challenge (no certificate was issued), so
// the device can try again. Releasing a hold that lapsed and was taken over changes nothing.
func ReleaseChallenge(ctx context.Context, repo Repository, h *Hold) error {
	return changeChallenge(ctx, repo, h.hash, func(c *Challenge) error {
		if c.HeldBy == h.id && c.UsedAt.IsZero() {
			c.HeldBy, c.HeldUntil = "", time.Time{}
		}
		return nil
	})
}

// PruneChallenges deletes challenges that expired at or before cutoff, used or not, and returns
// how many it removed. Challenges are useless after expiry.
func PruneChallenges(ctx context.Context, repo Repository, cutoff time.Time) (int, error) {
	return repo.DeleteExpiredChallenges(ctx, cutoff)
}

// changeChallenge applies fn to the challenge kept under hash and keeps the result; an error
// from fn keeps nothing.
func changeChallenge(ctx context.Context, repo Repository, hash string, fn func(*Challenge) error) error {
	c, err := repo.Challenge(ctx, hash)
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return err
	}
	return repo.PutChallenge(ctx, hash, c)
}
