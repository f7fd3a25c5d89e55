package storagetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/enroll"
	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testEnroll is the contract of enroll.Repository and enrollment's rules over it: a token is
// redeemed once, a SCEP challenge is held, then spent or released, expiry and revocation win.
func testEnroll(t *testing.T, open Opener) {
	t.Run("repository contract", func(t *testing.T) { enrollContract(t, open) })
	t.Run("create validation", func(t *testing.T) { enrollCreateValidation(t, open) })
	t.Run("redeem", func(t *testing.T) { enrollRedeem(t, open) })
	t.Run("revoke keeps first time and list states", func(t *testing.T) { enrollRevokeAndList(t, open) })
	t.Run("concurrent redemptions: exactly one", func(t *testing.T) { enrollRedeemConcurrent(t, open) })
	t.Run("bind device", func(t *testing.T) { enrollBindDevice(t, open) })
	t.Run("redeem for profile", func(t *testing.T) { enrollRedeemForProfile(t, open) })
	t.Run("challenge flow", func(t *testing.T) { enrollChallengeFlow(t, open) })
	t.Run("challenge hold", func(t *testing.T) { enrollChallengeHold(t, open) })
	t.Run("concurrent SCEP requests: one certificate", func(t *testing.T) { enrollSCEPConcurrent(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { enrollRollback(t, open) })
	t.Run("reopen keeps everything", func(t *testing.T) { enrollReopen(t, open) })
	t.Run("reusable credential", func(t *testing.T) { enrollReusable(t, open) })
	t.Run("reusable credential: concurrent uses stop at the maximum", func(t *testing.T) { enrollReusableConcurrent(t, open) })
}

// enrollStart is when every enrollment test's clock starts.
var enrollStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// enrollStore narrows st to enrollment's repository, as the server does.
func enrollStore(st storage.Store) enroll.Store {
	return storage.Scope(st, func(tx storage.Tx) enroll.Tx { return tx })
}

// newEnroll opens a fresh store and returns the enrollment service on it, on a test clock.
func newEnroll(t *testing.T, open Opener, opts ...enroll.Option) (*enroll.Service, *testclock.Clock, storage.Store) {
	t.Helper()
	st := Fresh(t, open)
	c := testclock.New(enrollStart)
	return enroll.New(enrollStore(st), append([]enroll.Option{enroll.WithClock(c.Now)}, opts...)...), c, st
}

// The Repository itself: records and their token index, challenges, pruning, and the sentinel
// errors every backend must return.
func enrollContract(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	hash := strings.Repeat("ab", 32)
	rec := &enroll.Record{Enrollment: enroll.Enrollment{ID: "e_1", Owner: "o", Group: "g", Platform: enroll.PlatformApple,
		CreatedAt: enrollStart, ExpiresAt: enrollStart.Add(time.Hour)}, TokenHash: hash}
	ch := &enroll.Challenge{EnrollmentID: "e_1", CreatedAt: enrollStart, ExpiresAt: enrollStart.Add(time.Hour),
		HeldBy: "h", HeldUntil: enrollStart.Add(time.Minute)}
	chHash := strings.Repeat("cd", 32)
	err := st.Update(ctx, func(tx storage.Tx) error {
		r := tx.Enrollments()
		if err := r.Add(ctx, rec); err != nil {
			return err
		}
		if err := r.Add(ctx, rec); !errors.Is(err, enroll.ErrConflict) {
			t.Errorf("Add of a stored ID: %v, want ErrConflict", err)
		}
		if err := r.PutChallenge(ctx, chHash, ch); err != nil {
			return err
		}
		expired := &enroll.Challenge{EnrollmentID: "e_1", CreatedAt: enrollStart, ExpiresAt: enrollStart}
		return r.PutChallenge(ctx, strings.Repeat("ef", 32), expired)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Enrollments()
		got, err := r.Get(ctx, "e_1")
		if err != nil {
			return err
		}
		if got.ID != "e_1" || got.TokenHash != hash || got.Platform != enroll.PlatformApple || !got.ExpiresAt.Equal(rec.ExpiresAt) || got.State != "" {
			t.Errorf("Get = %+v", got)
		}
		if _, err := r.Get(ctx, "e_2"); !errors.Is(err, enroll.ErrNotFound) {
			t.Errorf("Get unknown: %v, want ErrNotFound", err)
		}
		if id, err := r.LookupToken(ctx, hash); err != nil || id != "e_1" {
			t.Errorf("LookupToken = %q, %v", id, err)
		}
		if _, err := r.LookupToken(ctx, strings.Repeat("00", 32)); !errors.Is(err, enroll.ErrUnknown) {
			t.Errorf("LookupToken unknown: %v, want ErrUnknown", err)
		}
		if list, err := r.List(ctx); err != nil || len(list) != 1 || list[0].ID != "e_1" {
			t.Errorf("List = %+v, %v", list, err)
		}
		c, err := r.Challenge(ctx, chHash)
		if err != nil || c.EnrollmentID != "e_1" || c.HeldBy != "h" || !c.HeldUntil.Equal(ch.HeldUntil) || !c.UsedAt.IsZero() {
			t.Errorf("Challenge = %+v, %v", c, err)
		}
		if _, err := r.Challenge(ctx, strings.Repeat("00", 32)); !errors.Is(err, enroll.ErrUnknown) {
			t.Errorf("Challenge unknown: %v, want ErrUnknown", err)
		}
		if err := r.Put(ctx, rec); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Put in a View: %v, want storage.ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx storage.Tx) error {
		n, err := tx.Enrollments().DeleteExpiredChallenges(ctx, enrollStart)
		if err != nil || n != 1 {
			t.Errorf("DeleteExpiredChallenges = %d, %v; want 1", n, err)
		}
		_, err = tx.Enrollments().Challenge(ctx, chHash)
		return err
	})
	if err != nil {
		t.Errorf("the live challenge after pruning: %v", err)
	}
}

func enrollCreateValidation(t *testing.T, open Opener) {
	s, _, _ := newEnroll(t, open)
	ctx := context.Background()
	good := enroll.Request{Owner: "alice@example.org", Group: "nursing", Platform: enroll.PlatformAgent}
	for name, mut := range map[string]func(*enroll.Request){
		"no owner":         func(r *enroll.Request) { r.Owner = "  " },
		"no group":         func(r *enroll.Request) { r.Group = "" },
		"long owner":       func(r *enroll.Request) { r.Owner = strings.Repeat("a", 129) },
		"control char":     func(r *enroll.Request) { r.Group = "ward\x00" },
		"bad utf8":         func(r *enroll.Request) { r.Owner = "\xff" },
		"platform":         func(r *enroll.Request) { r.Platform = "blackberry" },
		"byod not android": func(r *enroll.Request) { r.BYOD = true },
		"ttl short":        func(r *enroll.Request) { r.TTL = 30 * time.Second },
		"ttl long":         func(r *enroll.Request) { r.TTL = enroll.MaxTTL + time.Second },
		"ttl negative":     func(r *enroll.Request) { r.TTL = -time.Hour },
	} {
		req := good
		mut(&req)
		if _, _, err := s.Create(ctx, req); !errors.Is(err, enroll.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	e, tok, err := s.Create(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ExpiresAt.Sub(e.CreatedAt); got != enroll.DefaultTTL {
		t.Errorf("default ttl = %s", got)
	}
	if e.State != enroll.StatePending || e.Platform != enroll.PlatformAgent || !strings.HasPrefix(e.ID, "e_") {
		t.Errorf("enrollment = %+v", e)
	}
	// 256 random bits, hex encoded, after the token prefix.
	if len(tok) != len(tokenPrefix)+64 || !strings.HasPrefix(tok, tokenPrefix) {
		t.Errorf("token %q has the wrong shape", tok)
	}
}

// tokenPrefix and challengePrefix start every enrollment token and SCEP challenge.
const (
	tokenPrefix     = "hale_enr_"
	challengePrefix = "hale_scep_"
)

func enrollRedeem(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, _ := newEnroll(t, open)
	e, tok, err := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent, TTL: time.Hour, CreatedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, tok, enroll.PlatformApple, "d_1"); !errors.Is(err, enroll.ErrWrongPlatform) {
		t.Fatalf("wrong platform: %v", err)
	}
	got, err := s.Redeem(ctx, tok, enroll.PlatformAgent, "d_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.State != enroll.StateUsed || got.DeviceID != "d_1" || !got.UsedAt.Equal(clk.Now()) {
		t.Fatalf("redeemed = %+v", got)
	}
	if _, err := s.Redeem(ctx, tok, enroll.PlatformAgent, "d_2"); !errors.Is(err, enroll.ErrUsed) {
		t.Fatalf("second redeem: %v", err)
	}
	// Flip one hex digit: a well-formed but unknown token.
	last := tok[len(tok)-1]
	wrong := tok[:len(tok)-1] + map[bool]string{true: "0", false: "1"}[last != '0']
	for _, bad := range []string{wrong, "", tokenPrefix, tokenPrefix + strings.Repeat("z", 64), strings.Repeat("a", 10000), challengePrefix + tok[len(tokenPrefix):]} {
		if _, err := s.Redeem(ctx, bad, enroll.PlatformAgent, "d_3"); !errors.Is(err, enroll.ErrUnknown) {
			t.Errorf("Redeem(%.20q) = %v, want ErrUnknown", bad, err)
		}
	}

	_, tok2, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent, TTL: time.Hour})
	clk.Advance(time.Hour)
	if _, err := s.Redeem(ctx, tok2, enroll.PlatformAgent, "d_4"); !errors.Is(err, enroll.ErrExpired) {
		t.Errorf("expired: %v", err)
	}

	e3, tok3, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent})
	if _, err := s.Revoke(ctx, e3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, tok3, enroll.PlatformAgent, "d_5"); !errors.Is(err, enroll.ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	if _, err := s.Revoke(ctx, "e_nope"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
}

func enrollRevokeAndList(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, _ := newEnroll(t, open)
	mk := func(p enroll.Platform, ttl time.Duration) (*enroll.Enrollment, string) {
		e, tok, err := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: p, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second) // distinct creation times, for the ordering check
		return e, tok
	}
	pending, _ := mk(enroll.PlatformApple, 24*time.Hour)
	used, usedTok := mk(enroll.PlatformAgent, 24*time.Hour)
	expired, _ := mk(enroll.PlatformAgent, time.Minute)
	revoked, _ := mk(enroll.PlatformApple, 24*time.Hour)
	if _, err := s.Redeem(ctx, usedTok, enroll.PlatformAgent, "d_x"); err != nil {
		t.Fatal(err)
	}
	r1, _ := s.Revoke(ctx, revoked.ID)
	clk.Advance(2 * time.Minute)
	r2, _ := s.Revoke(ctx, revoked.ID)
	if !r1.RevokedAt.Equal(r2.RevokedAt) {
		t.Errorf("second revoke moved the time: %v -> %v", r1.RevokedAt, r2.RevokedAt)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]enroll.State{pending.ID: enroll.StatePending, used.ID: enroll.StateUsed, expired.ID: enroll.StateExpired, revoked.ID: enroll.StateRevoked}
	if len(list) != len(want) {
		t.Fatalf("List has %d, want %d", len(list), len(want))
	}
	for i, e := range list {
		if e.State != want[e.ID] {
			t.Errorf("%s state = %s, want %s", e.ID, e.State, want[e.ID])
		}
		if i > 0 && e.CreatedAt.After(list[i-1].CreatedAt) {
			t.Error("List is not newest first")
		}
	}
	got, err := s.Get(ctx, used.ID)
	if err != nil || got.DeviceID != "d_x" || got.State != enroll.StateUsed {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
}

func enrollRedeemConcurrent(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, _ := newEnroll(t, open)
	_, tok, err := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent})
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Redeem(ctx, tok, enroll.PlatformAgent, "d_"+string(rune('a'+i)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok, used := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, enroll.ErrUsed):
			used++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || used != n-1 {
		t.Errorf("ok=%d used=%d, want 1 and %d", ok, used, n-1)
	}
}

func enrollBindDevice(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, _ := newEnroll(t, open)
	e, tok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	if _, err := s.BindDevice(ctx, e.ID, "d_1"); !errors.Is(err, enroll.ErrNotRedeemed) {
		t.Fatalf("bind pending: %v", err)
	}
	s.Redeem(ctx, tok, enroll.PlatformApple, "")
	if got, err := s.BindDevice(ctx, e.ID, "d_1"); err != nil || got.DeviceID != "d_1" {
		t.Fatalf("bind = %+v, %v", got, err)
	}
	if _, err := s.BindDevice(ctx, e.ID, "d_1"); err != nil {
		t.Errorf("rebind same device: %v", err)
	}
	if _, err := s.BindDevice(ctx, e.ID, "d_2"); !errors.Is(err, enroll.ErrAlreadyBound) {
		t.Errorf("bind other device: %v", err)
	}
	if _, err := s.BindDevice(ctx, e.ID, ""); !errors.Is(err, enroll.ErrInvalid) {
		t.Errorf("bind empty: %v", err)
	}
	if _, err := s.BindDevice(ctx, "e_x", "d_1"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("bind unknown: %v", err)
	}
}

func enrollRedeemForProfile(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, _ := newEnroll(t, open)
	_, agentTok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent})
	if _, _, err := s.RedeemForProfile(ctx, agentTok, false); !errors.Is(err, enroll.ErrWrongPlatform) {
		t.Fatalf("agent token: %v", err)
	}
	// The failed attempt did not spend the agent token.
	if _, err := s.Redeem(ctx, agentTok, enroll.PlatformAgent, "d_1"); err != nil {
		t.Fatalf("agent token spent by a failed profile fetch: %v", err)
	}
	e, tok, _ := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformApple})
	got, ch, err := s.RedeemForProfile(ctx, tok, false)
	if err != nil || got.ID != e.ID || got.State != enroll.StateUsed {
		t.Fatalf("RedeemForProfile = %+v, %v", got, err)
	}
	if _, _, err := s.RedeemForProfile(ctx, tok, false); !errors.Is(err, enroll.ErrUsed) {
		t.Errorf("second fetch: %v", err)
	}
	if c, err := consume(s, ch); err != nil || c.ID != e.ID {
		t.Errorf("challenge = %+v, %v", c, err)
	}
	if _, _, err := s.RedeemForProfile(ctx, "junk", false); !errors.Is(err, enroll.ErrUnknown) {
		t.Errorf("junk: %v", err)
	}
}

// A unit of work that redeems a token and then fails leaves the token unspent and the
// enrollment pending; one that creates an enrollment and fails leaves no enrollment.
func enrollRollback(t *testing.T, open Opener) {
	ctx := context.Background()
	s, clk, st := newEnroll(t, open)
	_, tok, err := s.Create(ctx, enroll.Request{Owner: "o", Group: "g", Platform: enroll.PlatformAgent})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = st.Update(ctx, func(tx storage.Tx) error {
		if _, err := enroll.Redeem(ctx, tx.Enrollments(), tok, enroll.PlatformAgent, "d_1", clk.Now()); err != nil {
			return err
		}
		if _, _, err := enroll.Create(ctx, tx.Enrollments(), enroll.Request{Owner: "o2", Group: "g", Platform: enroll.PlatformApple}, clk.Now()); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].State != enroll.StatePending || list[0].DeviceID != "" {
		t.Fatalf("after the failed unit of work: %+v, %v; want one pending enrollment", list, err)
	}
	if _, err := s.Redeem(ctx, tok, enroll.PlatformAgent, "d_2"); err != nil {
		t.Errorf("token spent by a failed unit of work: %v", err)
	}
}
