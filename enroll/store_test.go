package enroll

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/testclock"
)

func newStore(t *testing.T, opts ...Option) (*Store, *testclock.Clock, *bbolt.DB) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "e.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	s, err := New(db, append([]Option{WithClock(c.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, db
}

func TestCreateValidation(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	good := Request{Owner: "alice@example.org", Group: "nursing", Platform: PlatformAgent}
	for name, mut := range map[string]func(*Request){
		"no owner":     func(r *Request) { r.Owner = "  " },
		"no group":     func(r *Request) { r.Group = "" },
		"long owner":   func(r *Request) { r.Owner = strings.Repeat("a", 129) },
		"control char": func(r *Request) { r.Group = "ward\x00" },
		"bad utf8":     func(r *Request) { r.Owner = "\xff" },
		"platform":     func(r *Request) { r.Platform = "android" },
		"ttl short":    func(r *Request) { r.TTL = 30 * time.Second },
		"ttl long":     func(r *Request) { r.TTL = MaxTTL + time.Second },
		"ttl negative": func(r *Request) { r.TTL = -time.Hour },
	} {
		req := good
		mut(&req)
		if _, _, err := s.Create(ctx, req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	e, tok, err := s.Create(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ExpiresAt.Sub(e.CreatedAt); got != DefaultTTL {
		t.Errorf("default ttl = %s", got)
	}
	if e.State != StatePending || e.Platform != PlatformAgent || !strings.HasPrefix(e.ID, "e_") {
		t.Errorf("enrollment = %+v", e)
	}
	// 256 random bits, hex encoded.
	if len(tok) != len(tokenPrefix)+64 || !strings.HasPrefix(tok, tokenPrefix) {
		t.Errorf("token %q has the wrong shape", tok)
	}
}

func TestTokenStoredOnlyAsHash(t *testing.T) {
	s, _, db := newStore(t)
	_, tok, err := s.Create(context.Background(), Request{Owner: "o", Group: "g", Platform: PlatformApple})
	if err != nil {
		t.Fatal(err)
	}
	secret := tok[len(tokenPrefix):]
	db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if strings.Contains(string(k)+string(v), secret) {
					t.Errorf("bucket %s holds the token", name)
				}
				return nil
			})
		})
	})
}

func TestRedeem(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	e, tok, err := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformAgent, TTL: time.Hour, CreatedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, tok, PlatformApple, "d_1"); !errors.Is(err, ErrWrongPlatform) {
		t.Fatalf("wrong platform: %v", err)
	}
	got, err := s.Redeem(ctx, tok, PlatformAgent, "d_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.State != StateUsed || got.DeviceID != "d_1" || !got.UsedAt.Equal(clk.Now()) {
		t.Fatalf("redeemed = %+v", got)
	}
	if _, err := s.Redeem(ctx, tok, PlatformAgent, "d_2"); !errors.Is(err, ErrUsed) {
		t.Fatalf("second redeem: %v", err)
	}
	// Flip one hex digit: a well-formed but unknown token.
	last := tok[len(tok)-1]
	wrong := tok[:len(tok)-1] + map[bool]string{true: "0", false: "1"}[last != '0']
	for _, bad := range []string{wrong, "", tokenPrefix, tokenPrefix + strings.Repeat("z", 64), strings.Repeat("a", 10000), "hale_scep_" + tok[len(tokenPrefix):]} {
		if _, err := s.Redeem(ctx, bad, PlatformAgent, "d_3"); !errors.Is(err, ErrUnknown) {
			t.Errorf("Redeem(%.20q) = %v, want ErrUnknown", bad, err)
		}
	}

	_, tok2, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformAgent, TTL: time.Hour})
	clk.Advance(time.Hour)
	if _, err := s.Redeem(ctx, tok2, PlatformAgent, "d_4"); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}

	e3, tok3, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformAgent})
	if _, err := s.Revoke(ctx, e3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, tok3, PlatformAgent, "d_5"); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
	if _, err := s.Revoke(ctx, "e_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
}

func TestRevokeKeepsFirstTimeAndListStates(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t)
	mk := func(p Platform, ttl time.Duration) (*Enrollment, string) {
		e, tok, err := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: p, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second) // distinct creation times, for the ordering check
		return e, tok
	}
	pending, _ := mk(PlatformApple, 24*time.Hour)
	used, usedTok := mk(PlatformAgent, 24*time.Hour)
	expired, _ := mk(PlatformAgent, time.Minute)
	revoked, _ := mk(PlatformApple, 24*time.Hour)
	if _, err := s.Redeem(ctx, usedTok, PlatformAgent, "d_x"); err != nil {
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
	want := map[string]State{pending.ID: StatePending, used.ID: StateUsed, expired.ID: StateExpired, revoked.ID: StateRevoked}
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
	if err != nil || got.DeviceID != "d_x" || got.State != StateUsed {
		t.Errorf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
}

func TestRedeemConcurrentExactlyOnce(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	_, tok, err := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformAgent})
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
			_, err := s.Redeem(ctx, tok, PlatformAgent, "d_"+string(rune('a'+i)))
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
		case errors.Is(err, ErrUsed):
			used++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || used != n-1 {
		t.Errorf("ok=%d used=%d, want 1 and %d", ok, used, n-1)
	}
}

func TestChallengeFlow(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t, WithChallengeTTL(30*time.Minute))
	e, tok, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformApple})
	if _, err := s.IssueChallenge(ctx, e.ID); !errors.Is(err, ErrNotRedeemed) {
		t.Fatalf("challenge before redeem: %v", err)
	}
	if _, err := s.Redeem(ctx, tok, PlatformApple, ""); err != nil {
		t.Fatal(err)
	}
	ch, err := s.IssueChallenge(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consume(s, ch[:len(ch)-1]+"x"); !errors.Is(err, ErrUnknown) {
		t.Errorf("malformed challenge: %v", err)
	}
	if _, err := consume(s, tok); !errors.Is(err, ErrUnknown) {
		t.Errorf("token as challenge: %v", err)
	}
	got, err := consume(s, ch)
	if err != nil || got.ID != e.ID {
		t.Fatalf("consume = %+v, %v", got, err)
	}
	if _, err := consume(s, ch); !errors.Is(err, ErrUsed) {
		t.Errorf("reuse: %v", err)
	}

	// Expiry.
	ch2, _ := s.IssueChallenge(ctx, e.ID)
	clk.Advance(30 * time.Minute)
	if _, err := consume(s, ch2); !errors.Is(err, ErrExpired) {
		t.Errorf("expired challenge: %v", err)
	}
	// Revocation after issue.
	ch3, _ := s.IssueChallenge(ctx, e.ID)
	s.Revoke(ctx, e.ID)
	if _, err := consume(s, ch3); !errors.Is(err, ErrRevoked) {
		t.Errorf("challenge of revoked enrollment: %v", err)
	}
	if _, err := s.IssueChallenge(ctx, e.ID); !errors.Is(err, ErrRevoked) {
		t.Errorf("issue for revoked: %v", err)
	}
	// Agent enrollments get no SCEP challenge.
	_, atok, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformAgent})
	ae, _ := s.Redeem(ctx, atok, PlatformAgent, "d_1")
	if _, err := s.IssueChallenge(ctx, ae.ID); !errors.Is(err, ErrWrongPlatform) {
		t.Errorf("agent challenge: %v", err)
	}
	if _, err := s.IssueChallenge(ctx, "e_none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown enrollment: %v", err)
	}

	// Pruning removes expired challenges (ch, ch2 are past expiry after another 30m; ch3 too).
	clk.Advance(31 * time.Minute)
	n, err := s.PruneChallenges(ctx, clk.Now())
	if err != nil || n != 3 {
		t.Errorf("PruneChallenges = %d, %v; want 3", n, err)
	}
	if _, err := consume(s, ch); !errors.Is(err, ErrUnknown) {
		t.Errorf("pruned challenge: %v", err)
	}
}

func TestBindDevice(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	e, tok, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformApple})
	if _, err := s.BindDevice(ctx, e.ID, "d_1"); !errors.Is(err, ErrNotRedeemed) {
		t.Fatalf("bind pending: %v", err)
	}
	s.Redeem(ctx, tok, PlatformApple, "")
	if got, err := s.BindDevice(ctx, e.ID, "d_1"); err != nil || got.DeviceID != "d_1" {
		t.Fatalf("bind = %+v, %v", got, err)
	}
	if _, err := s.BindDevice(ctx, e.ID, "d_1"); err != nil {
		t.Errorf("rebind same device: %v", err)
	}
	if _, err := s.BindDevice(ctx, e.ID, "d_2"); !errors.Is(err, ErrAlreadyBound) {
		t.Errorf("bind other device: %v", err)
	}
	if _, err := s.BindDevice(ctx, e.ID, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("bind empty: %v", err)
	}
	if _, err := s.BindDevice(ctx, "e_x", "d_1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bind unknown: %v", err)
	}
}

func TestProfileURL(t *testing.T) {
	if got := ProfileURL("https://mdm.example.org/", "hale_enr_ab"); got != "https://mdm.example.org/enroll/apple/hale_enr_ab" {
		t.Errorf("ProfileURL = %q", got)
	}
}

func TestRedeemForProfile(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newStore(t)
	_, agentTok, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformAgent})
	if _, _, err := s.RedeemForProfile(ctx, agentTok); !errors.Is(err, ErrWrongPlatform) {
		t.Fatalf("agent token: %v", err)
	}
	// The failed attempt did not spend the agent token.
	if _, err := s.Redeem(ctx, agentTok, PlatformAgent, "d_1"); err != nil {
		t.Fatalf("agent token spent by a failed profile fetch: %v", err)
	}
	e, tok, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformApple})
	got, ch, err := s.RedeemForProfile(ctx, tok)
	if err != nil || got.ID != e.ID || got.State != StateUsed {
		t.Fatalf("RedeemForProfile = %+v, %v", got, err)
	}
	if _, _, err := s.RedeemForProfile(ctx, tok); !errors.Is(err, ErrUsed) {
		t.Errorf("second fetch: %v", err)
	}
	if c, err := consume(s, ch); err != nil || c.ID != e.ID {
		t.Errorf("challenge = %+v, %v", c, err)
	}
	if _, _, err := s.RedeemForProfile(ctx, "junk"); !errors.Is(err, ErrUnknown) {
		t.Errorf("junk: %v", err)
	}
}

// consume holds a challenge and spends it at once, as an issuance that succeeded does.
func consume(s *Store, secret string) (*Enrollment, error) {
	h, err := s.HoldChallenge(context.Background(), secret)
	if err != nil {
		return nil, err
	}
	if err := s.SpendChallenge(context.Background(), h, nil); err != nil {
		return nil, err
	}
	return h.Enrollment, nil
}

// A held challenge is not spent: while held, other requests get ErrInUse; released, it can be
// held again; spent, it is used. A hold that lapsed can be taken over, and the first holder can
// then no longer spend it.
func TestChallengeHold(t *testing.T) {
	ctx := context.Background()
	s, clk, _ := newStore(t, WithChallengeHold(time.Minute))
	e, tok, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformApple})
	_, ch, err := s.RedeemForProfile(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	h1, err := s.HoldChallenge(ctx, ch)
	if err != nil || h1.Enrollment.ID != e.ID {
		t.Fatalf("hold = %+v, %v", h1, err)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, ErrInUse) {
		t.Fatalf("second hold: %v, want ErrInUse", err)
	}
	if err := s.ReleaseChallenge(ctx, h1); err != nil {
		t.Fatal(err)
	}
	h2, err := s.HoldChallenge(ctx, ch)
	if err != nil {
		t.Fatalf("hold after release: %v", err)
	}
	if err := s.SpendChallenge(ctx, h1, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("spend by a released holder: %v, want ErrInUse", err)
	}

	// h2 lapses and h3 takes over: h2 can neither spend nor release it.
	clk.Advance(time.Minute)
	h3, err := s.HoldChallenge(ctx, ch)
	if err != nil {
		t.Fatalf("hold after the hold lapsed: %v", err)
	}
	if err := s.SpendChallenge(ctx, h2, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("spend by a lapsed holder: %v, want ErrInUse", err)
	}
	if err := s.ReleaseChallenge(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, ErrInUse) {
		t.Fatalf("a lapsed holder's release freed another's hold: %v", err)
	}
	// A failing also writes nothing: the challenge stays held by h3, unspent.
	boom := errors.New("boom")
	if err := s.SpendChallenge(ctx, h3, func(*bbolt.Tx, *Enrollment) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("spend with failing also: %v", err)
	}
	var seen *Enrollment
	if err := s.SpendChallenge(ctx, h3, func(_ *bbolt.Tx, e *Enrollment) error { seen = e; return nil }); err != nil || seen == nil || seen.ID != e.ID {
		t.Fatalf("spend = %v, also saw %+v", err, seen)
	}
	if _, err := s.HoldChallenge(ctx, ch); !errors.Is(err, ErrUsed) {
		t.Fatalf("hold of a spent challenge: %v, want ErrUsed", err)
	}

	// Revoked between hold and spend: not spent, refused.
	e2, tok2, _ := s.Create(ctx, Request{Owner: "o", Group: "g", Platform: PlatformApple})
	_, ch2, _ := s.RedeemForProfile(ctx, tok2)
	h, err := s.HoldChallenge(ctx, ch2)
	if err != nil {
		t.Fatal(err)
	}
	s.Revoke(ctx, e2.ID)
	if err := s.SpendChallenge(ctx, h, nil); !errors.Is(err, ErrRevoked) {
		t.Fatalf("spend after revocation: %v, want ErrRevoked", err)
	}
}
