package enroll

import (
	"context"
	"time"
)

// Service runs each enrollment step as one unit of work on a Store, on its clock and with its
// challenge lifetimes. It is safe for concurrent use. Steps that must commit with other domains'
// writes (a SCEP issuance creates the device and its audit entry) call this package's functions
// in a unit of work of their own instead.
type Service struct {
	st            Store
	now           func() time.Time
	challengeTTL  time.Duration
	challengeHold time.Duration
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock used for expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithChallengeTTL sets how long a SCEP challenge stays valid (default DefaultChallengeTTL).
func WithChallengeTTL(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.challengeTTL = d
		}
	}
}

// WithChallengeHold sets how long HoldChallenge holds a challenge for one issuance before
// another request may take it (default DefaultChallengeHold).
func WithChallengeHold(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.challengeHold = d
		}
	}
}

// New returns the enrollment service on st.
func New(st Store, opts ...Option) *Service {
	s := &Service{st: st, now: time.Now, challengeTTL: DefaultChallengeTTL, challengeHold: DefaultChallengeHold}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Now reads the service's clock, for a step that runs this package's rules in a unit of work of
// its own.
func (s *Service) Now() time.Time { return s.now() }

// Create makes an enrollment and returns it with its token, which is never available again. It
// is committed before Create returns.
func (s *Service) Create(ctx context.Context, req Request) (e *Enrollment, token string, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		e, token, err = Create(ctx, tx.Enrollments(), req, s.now())
		return err
	})
	return e, token, err
}

// Get returns the enrollment with id.
func (s *Service) Get(ctx context.Context, id string) (e *Enrollment, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		e, err = Get(ctx, tx.Enrollments(), id, s.now())
		return err
	})
	return e, err
}

// List returns every enrollment, newest first.
func (s *Service) List(ctx context.Context) (list []*Enrollment, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		list, err = List(ctx, tx.Enrollments(), s.now())
		return err
	})
	return list, err
}

// Revoke marks the enrollment revoked (see the function Revoke).
func (s *Service) Revoke(ctx context.Context, id string) (*Enrollment, error) {
	return s.change(ctx, func(repo Repository, now time.Time) (*Enrollment, error) {
		return Revoke(ctx, repo, id, now)
	})
}

// Redeem redeems a token for deviceID in one transaction: of two concurrent redemptions exactly
// one succeeds and the other gets ErrUsed (see the function Redeem).
func (s *Service) Redeem(ctx context.Context, token string, platform Platform, deviceID string) (*Enrollment, error) {
	return s.change(ctx, func(repo Repository, now time.Time) (*Enrollment, error) {
		return Redeem(ctx, repo, token, platform, deviceID, now)
	})
}

// RedeemForProfile redeems an Apple token and issues its SCEP challenge in one transaction, so a
// failure leaves the token unspent.
// byod says which kind the token must be: an organization's device (false) or a personal one
// enrolling through account-driven User Enrollment (true).
func (s *Service) RedeemForProfile(ctx context.Context, token string, byod bool) (e *Enrollment, challenge string, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		e, challenge, err = RedeemForProfile(ctx, tx.Enrollments(), token, byod, s.now(), s.challengeTTL)
		return err
	})
	return e, challenge, err
}

// CheckBYOD reports whether token is a pending BYOD enrollment, without spending it.
func (s *Service) CheckBYOD(ctx context.Context, token string) (e *Enrollment, err error) {
	err = s.st.View(ctx, func(tx Tx) error {
		e, err = CheckBYOD(ctx, tx.Enrollments(), token, s.now())
		return err
	})
	return e, err
}

// BindDevice records which device used a redeemed enrollment (see the function BindDevice).
func (s *Service) BindDevice(ctx context.Context, enrollmentID, deviceID string) (*Enrollment, error) {
	return s.change(ctx, func(repo Repository, now time.Time) (*Enrollment, error) {
		return BindDevice(ctx, repo, enrollmentID, deviceID, now)
	})
}

// IssueChallenge creates a one-time SCEP challenge for a redeemed Apple enrollment, valid for
// the service's challenge TTL.
func (s *Service) IssueChallenge(ctx context.Context, enrollmentID string) (secret string, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		secret, err = IssueChallenge(ctx, tx.Enrollments(), enrollmentID, s.now(), s.challengeTTL)
		return err
	})
	return secret, err
}

// HoldChallenge holds a SCEP challenge for one issuance, for the service's hold time (see the
// function HoldChallenge).
func (s *Service) HoldChallenge(ctx context.Context, secret string) (h *Hold, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		h, err = HoldChallenge(ctx, tx.Enrollments(), secret, s.now(), s.challengeHold)
		return err
	})
	return h, err
}

// SpendChallenge marks a held challenge used once its certificate was issued (see the function
// SpendChallenge, which a step that writes more in the same transaction calls itself).
func (s *Service) SpendChallenge(ctx context.Context, h *Hold) error {
	_, err := s.change(ctx, func(repo Repository, now time.Time) (*Enrollment, error) {
		return SpendChallenge(ctx, repo, h, now)
	})
	return err
}

// ReleaseChallenge ends a hold without spending the challenge, so the device can try again.
func (s *Service) ReleaseChallenge(ctx context.Context, h *Hold) error {
	return s.st.Update(ctx, func(tx Tx) error { return ReleaseChallenge(ctx, tx.Enrollments(), h) })
}

// PruneChallenges deletes challenges that expired at or before cutoff and returns how many. Call
// it periodically; challenges are useless after expiry.
func (s *Service) PruneChallenges(ctx context.Context, cutoff time.Time) (n int, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		n, err = PruneChallenges(ctx, tx.Enrollments(), cutoff)
		return err
	})
	return n, err
}

// change runs fn in one read-write transaction at the service's now.
func (s *Service) change(ctx context.Context, fn func(Repository, time.Time) (*Enrollment, error)) (e *Enrollment, err error) {
	err = s.st.Update(ctx, func(tx Tx) error {
		e, err = fn(tx.Enrollments(), s.now())
		return err
	})
	return e, err
}
