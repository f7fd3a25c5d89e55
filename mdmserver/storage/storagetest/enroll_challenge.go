package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/storage"
)

// consume holds a challenge and spends it at once, as an issuance that succeeded does.
func consume(s *enroll.Service, secret string) (*enroll.Enrollment, error) {
	h, err := s.HoldChallenge(context.Background(), secret)
	if err != nil {
		return nil, err
	}
	if err := s.SpendChallenge(context.Background(), h); err != nil {
		return nil, err
	}
	return h.Enrollment, nil
}

func enrollChallengeFlow(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, _ := newEnroll(t, open, enroll.WithChallengeTTL(30*time.Minute))
	e, tok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	if _, err := s.IssueChallenge(ctx, e.ID); !errors.Is(err, enroll.ErrNotRedeemed) {
		t.Fatalf("challenge before redeem: %v", err)
	}
	if _, err := s.Redeem(ctx, tok, enroll.PlatformApple, ""); err != nil {
		t.Fatal(err)
	}
	ch, err := s.IssueChallenge(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consume(s, ch[:len(ch)-1]+"x"); !errors.Is(err, enroll.ErrUnknown) {
		t.Errorf("malformed challenge: %v", err)
	}
	if _, err := consume(s, tok); !errors.Is(err, enroll.ErrUnknown) {
		t.Errorf("token as challenge: %v", err)
	}
	got, err := consume(s, ch)
	if err != nil || got.ID != e.ID {
		t.Fatalf("consume = %+v, %v", got, err)
	}
	if _, err := consume(s, ch); !errors.Is(err, enroll.ErrUsed) {
		t.Errorf("reuse: %v", err)
	}

	// Expiry.
	ch2, _ := s.IssueChallenge(ctx, e.ID)
	clk.Advance(30 * time.Minute)
	if _, err := consume(s, ch2); !errors.Is(err, enroll.ErrExpired) {
		t.Errorf("expired challenge: %v", err)
	}
	// Revocation after issue.
	ch3, _ := s.IssueChallenge(ctx, e.ID)
	s.Revoke(ctx, e.ID)
	if _, err := consume(s, ch3); !errors.Is(err, enroll.ErrRevoked) {
		t.Errorf("challenge of revoked enrollment: %v", err)
	}
	if _, err := s.IssueChallenge(ctx, e.ID); !errors.Is(err, enroll.ErrRevoked) {
		t.Errorf("issue for revoked: %v", err)
	}
	// Agent enrollments get no SCEP challenge.
	_, atok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent})
	ae, _ := s.Redeem(ctx, atok, enroll.PlatformAgent, "d_1")
	if _, err := s.IssueChallenge(ctx, ae.ID); !errors.Is(err, enroll.ErrWrongPlatform) {
		t.Errorf("agent challenge: %v", err)
	}
	if _, err := s.IssueChallenge(ctx, "e_none"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("unknown enrollment: %v", err)
	}

	// Pruning removes expired challenges (ch, ch2 are past expiry after another 30m; ch3 too).
	clk.Advance(31 * time.Minute)
	n, err := s.PruneChallenges(ctx, clk.Now())
	if err != nil || n != 3 {
		t.Errorf("PruneChallenges = %d, %v; want 3", n, err)
	}
	if _, err := consume(s, ch); !errors.Is(err, enroll.ErrUnknown) {
		t.Errorf("pruned challenge: %v", err)
	}
}

// A held challenge is not spent: while held, other requests get ErrInUse; released, it can be
// held again; spent, it is used. A hold that lapsed can be taken over, and the first holder can
// then no longer spend it.
func enrollChallengeHold(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, st := newEnroll(t, open, enroll.WithChallengeHold(time.Minute))
	e, tok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	_, ch, err := s.RedeemForProfile(ctx, tok, false)
	if err != nil {
		t.Fatal(err)
	}
	h1, err := s.HoldChallenge(ctx, ch)
	if err != nil || h1.Enrollment.ID != e.ID {
		t.Fatalf("hold = %+v, %v", h1, err)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, enroll.ErrInUse) {
		t.Fatalf("second hold: %v, want ErrInUse", err)
	}
	if err := s.ReleaseChallenge(ctx, h1); err != nil {
		t.Fatal(err)
	}
	h2, err := s.HoldChallenge(ctx, ch)
	if err != nil {
		t.Fatalf("hold after release: %v", err)
	}
	if err := s.SpendChallenge(ctx, h1); !errors.Is(err, enroll.ErrInUse) {
		t.Fatalf("spend by a released holder: %v, want ErrInUse", err)
	}

	// h2 lapses and h3 takes over: h2 can neither spend nor release it.
	clk.Advance(time.Minute)
	h3, err := s.HoldChallenge(ctx, ch)
	if err != nil {
		t.Fatalf("hold after the hold lapsed: %v", err)
	}
	if err := s.SpendChallenge(ctx, h2); !errors.Is(err, enroll.ErrInUse) {
		t.Fatalf("spend by a lapsed holder: %v, want ErrInUse", err)
	}
	if err := s.ReleaseChallenge(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, enroll.ErrInUse) {
		t.Fatalf("a lapsed holder's release freed another's hold: %v", err)
	}
	// A unit of work that spends and then fails writes nothing: the challenge stays held by h3,
	// unspent. (The server spends in the unit of work that also creates the device and audits.)
	boom := errors.New("boom")
	spendThen := func(then func(*enroll.Enrollment) error) error {
		return st.Update(ctx, func(tx storage.Tx) error {
			e, err := enroll.SpendChallenge(ctx, tx.Enrollments(), h3, clk.Now())
			if err != nil {
				return err
			}
			return then(e)
		})
	}
	if err := spendThen(func(*enroll.Enrollment) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("spend with failing also: %v", err)
	}
	var seen *enroll.Enrollment
	if err := spendThen(func(e *enroll.Enrollment) error { seen = e; return nil }); err != nil || seen == nil || seen.ID != e.ID {
		t.Fatalf("spend = %v, also saw %+v", err, seen)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, enroll.ErrUsed) {
		t.Fatalf("hold of a spent challenge: %v, want ErrUsed", err)
	}

	// Revoked between hold and spend: not spent, refused.
	e2, tok2, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	_, ch2, _ := s.RedeemForProfile(ctx, tok2, false)
	h, err := s.HoldChallenge(ctx, ch2)
	if err != nil {
		t.Fatal(err)
	}
	s.Revoke(ctx, e2.ID)
	if err := s.SpendChallenge(ctx, h); !errors.Is(err, enroll.ErrRevoked) {
		t.Fatalf("spend after revocation: %v, want ErrRevoked", err)
	}
}

// Many SCEP requests with one challenge at once, as a device retrying in parallel (or an
// attacker with a copied profile) sends them: exactly one gets a certificate, every other one is
// refused as in use or used.
func enrollSCEPConcurrent(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, _ := newEnroll(t, open)
	_, tok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	_, ch, err := s.RedeemForProfile(ctx, tok, false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := consume(s, ch) // hold, "issue", spend: a certificate when it returns nil
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	issued, refused := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			issued++
		case errors.Is(err, enroll.ErrInUse), errors.Is(err, enroll.ErrUsed):
			refused++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if issued != 1 || refused != n-1 {
		t.Errorf("certificates=%d refused=%d, want 1 and %d", issued, refused, n-1)
	}
}

// What committed is there after a reopen: enrollments in their states, a held challenge still
// held, a spent one still spent.
func enrollReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	first := st
	t.Cleanup(func() { _ = first.Close() }) // should the test end before Reopen closes it
	clk := testclock.New(enrollStart)
	s := enroll.New(enrollStore(st), enroll.WithClock(clk.Now))
	apple, tok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple, CreatedBy: "it"})
	_, ch, err := s.RedeemForProfile(ctx, tok, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindDevice(ctx, apple.ID, "d_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HoldChallenge(ctx, ch); err != nil {
		t.Fatal(err)
	}
	agent, _, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent})
	if _, err := s.Revoke(ctx, agent.ID); err != nil {
		t.Fatal(err)
	}
	_, pendingTok, _ := s.Create(ctx, enroll.Request{Owner: "p", Group: "g", Platform: enroll.PlatformAgent})

	st = Reopen(t, open, st, dir)
	s = enroll.New(enrollStore(st), enroll.WithClock(clk.Now))
	if got, err := s.Get(ctx, apple.ID); err != nil || got.State != enroll.StateUsed || got.DeviceID != "d_1" || got.CreatedBy != "it" || !got.ExpiresAt.Equal(apple.ExpiresAt) {
		t.Errorf("apple enrollment after reopen = %+v, %v", got, err)
	}
	if got, err := s.Get(ctx, agent.ID); err != nil || got.State != enroll.StateRevoked {
		t.Errorf("revoked enrollment after reopen = %+v, %v", got, err)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, enroll.ErrInUse) {
		t.Errorf("held challenge after reopen: %v, want ErrInUse", err)
	}
	clk.Advance(enroll.DefaultChallengeHold)
	if _, err := consume(s, ch); err != nil {
		t.Fatalf("challenge after its hold lapsed: %v", err)
	}
	if _, err := s.Redeem(ctx, pendingTok, enroll.PlatformAgent, "d_2"); err != nil {
		t.Fatalf("token after reopen: %v", err)
	}

	st = Reopen(t, open, st, dir)
	s = enroll.New(enrollStore(st), enroll.WithClock(clk.Now))
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, enroll.ErrUsed) {
		t.Errorf("spent challenge after reopen: %v, want ErrUsed", err)
	}
	if _, err := s.Redeem(ctx, pendingTok, enroll.PlatformAgent, "d_3"); !errors.Is(err, enroll.ErrUsed) {
		t.Errorf("redeemed token after reopen: %v, want ErrUsed", err)
	}
}
