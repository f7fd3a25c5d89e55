package enroll

import (
	"context"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"

	"github.com/halemdm/hale/internal/randid"
)

// Create makes an enrollment for req at now and returns it with its token, which is never
// available again: only the token's hash is kept.
func Create(ctx context.Context, repo Repository, req Request, now time.Time) (*Enrollment, string, error) {
	req, err := req.normalize()
	if err != nil {
		return nil, "", err
	}
	token := tokenPrefix + randid.Hex(secretBytes)
	now = now.UTC()
	rec := &Record{
		Enrollment: Enrollment{
			ID:        "e_" + randid.Hex(8),
			Owner:     req.Owner,
			Group:     req.Group,
			Platform:  req.Platform,
			CreatedAt: now,
			CreatedBy: req.CreatedBy,
			ExpiresAt: now.Add(req.TTL),
			BYOD:      req.BYOD, ManagedAppleID: req.ManagedAppleID,
			Reusable: req.Reusable, OS: req.OS, MaxDevices: req.MaxDevices,
		},
		TokenHash: hashSecret(token),
	}
	if err := repo.Add(ctx, rec); err != nil {
		return nil, "", fmt.Errorf("enroll: create enrollment: %w", err)
	}
	return rec.at(now), token, nil
}

// Get returns the enrollment with id, in its state at now.
func Get(ctx context.Context, repo Repository, id string, now time.Time) (*Enrollment, error) {
	rec, err := get(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	return rec.at(now), nil
}

// List returns every enrollment in its state at now, newest first.
func List(ctx context.Context, repo Repository, now time.Time) ([]*Enrollment, error) {
	recs, err := repo.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Enrollment, 0, len(recs))
	for _, rec := range recs {
		out = append(out, rec.at(now))
	}
	slices.SortFunc(out, func(a, b *Enrollment) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// Revoke marks the enrollment revoked at now: its token can no longer be redeemed and its
// outstanding SCEP challenges can no longer be held or spent. Revoking twice keeps the first time.
func Revoke(ctx context.Context, repo Repository, id string, now time.Time) (*Enrollment, error) {
	return change(ctx, repo, id, now, func(rec *Record) error {
		if rec.RevokedAt.IsZero() {
			rec.RevokedAt = now.UTC()
		}
		return nil
	})
}

// Redeem checks a presented token and marks its enrollment used by deviceID at now. Run in one
// unit of work, of two concurrent redemptions exactly one succeeds and the other gets ErrUsed.
// deviceID may be empty when the device is not known yet (Apple profile fetch); see BindDevice.
//
// A wrong platform does not spend the token.
func Redeem(ctx context.Context, repo Repository, token string, platform Platform, deviceID string, now time.Time) (*Enrollment, error) {
	if err := checkText("device id", deviceID, false); err != nil {
		return nil, err
	}
	rec, err := redeem(ctx, repo, token, platform, false, deviceID, now)
	if err != nil {
		return nil, err
	}
	return rec.at(now), nil
}

// RedeemForProfile is the Apple profile fetch: it redeems an Apple token and issues the SCEP
// challenge for the profile, valid for challengeTTL. Run in one unit of work, a failure leaves
// the token unspent.
func RedeemForProfile(ctx context.Context, repo Repository, token string, byod bool, now time.Time, challengeTTL time.Duration) (*Enrollment, string, error) {
	rec, err := redeem(ctx, repo, token, PlatformApple, byod, "", now)
	if err != nil {
		return nil, "", err
	}
	secret, err := issueChallenge(ctx, repo, rec, now, challengeTTL)
	if err != nil {
		return nil, "", err
	}
	return rec.at(now), secret, nil
}

// redeem checks token and stores its record used by deviceID.
func redeem(ctx context.Context, repo Repository, token string, platform Platform, byod bool, deviceID string, now time.Time) (*Record, error) {
	rec, err := check(ctx, repo, token, platform, byod, now)
	if err != nil {
		return nil, err
	}
	rec.UsedAt = now.UTC()
	rec.DeviceID = deviceID
	return rec, repo.Put(ctx, rec)
}

// CheckBYOD reports whether token is a pending BYOD enrollment, without spending it: the
// account-driven sign-in takes it as the enrollment code, and the enrollment request that
// follows spends it.
func CheckBYOD(ctx context.Context, repo Repository, token string, now time.Time) (*Enrollment, error) {
	rec, err := check(ctx, repo, token, PlatformApple, true, now)
	if err != nil {
		return nil, err
	}
	return rec.at(now), nil
}

// check finds token's record and reports why it cannot be redeemed for platform (and, on
// Apple, for a personal or an organization's device), or nil.
func check(ctx context.Context, repo Repository, token string, platform Platform, byod bool, now time.Time) (*Record, error) {
	hash, ok := tokenHash(token, tokenPrefix)
	if !ok {
		return nil, ErrUnknown
	}
	id, err := repo.LookupToken(ctx, hash)
	if err != nil {
		return nil, err
	}
	rec, err := get(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	// The lookup matched on the hash already; the constant-time compare keeps the check honest
	// should the index and the record ever disagree.
	if subtle.ConstantTimeCompare([]byte(rec.TokenHash), []byte(hash)) != 1 {
		return nil, ErrUnknown
	}
	if err := usable(rec, now); err != nil {
		return nil, err
	}
	if rec.Platform != platform {
		return nil, ErrWrongPlatform
	}
	// On Apple a personal device enrolls by another flow than an organization's; an Android
	// BYOD token already carries the work profile in its AMAPI token.
	if platform == PlatformApple && rec.BYOD != byod {
		if rec.BYOD {
			return nil, fmt.Errorf("%w: it enrolls a personal device through account-driven User Enrollment (Settings, sign in to a work account)", ErrWrongPlatform)
		}
		return nil, fmt.Errorf("%w: it enrolls an organization's device with an enrollment profile, not a personal one", ErrWrongPlatform)
	}
	return rec, nil
}

// usable reports why a pending enrollment cannot be redeemed, or nil.
func usable(rec *Record, now time.Time) error {
	switch rec.StateAt(now) {
	case StateRevoked:
		return ErrRevoked
	case StateUsed:
		if rec.Reusable {
			return ErrExhausted
		}
		return ErrUsed
	case StateExpired:
		return ErrExpired
	}
	return nil
}

// BindDevice records which device used a redeemed enrollment. Binding the same device again is a
// no-op; binding a different one fails with ErrAlreadyBound.
func BindDevice(ctx context.Context, repo Repository, id, deviceID string, now time.Time) (*Enrollment, error) {
	if deviceID == "" {
		return nil, fmt.Errorf("%w: device id is required", ErrInvalid)
	}
	if err := checkText("device id", deviceID, true); err != nil {
		return nil, err
	}
	return change(ctx, repo, id, now, func(rec *Record) error {
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

// change applies fn to the record with id and stores the result; an error from fn stores nothing.
func change(ctx context.Context, repo Repository, id string, now time.Time, fn func(*Record) error) (*Enrollment, error) {
	rec, err := get(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	if err := fn(rec); err != nil {
		return nil, err
	}
	if err := repo.Put(ctx, rec); err != nil {
		return nil, err
	}
	return rec.at(now), nil
}

// get returns the record with id. An ID no enrollment can have is not looked up.
func get(ctx context.Context, repo Repository, id string) (*Record, error) {
	if id == "" || len(id) > maxText {
		return nil, ErrNotFound
	}
	return repo.Get(ctx, id)
}

// at returns the enrollment part of rec with its state at now.
func (rec *Record) at(now time.Time) *Enrollment {
	e := rec.Enrollment
	e.State = e.StateAt(now)
	return &e
}
