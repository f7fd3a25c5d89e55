package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/enroll"
)

// enrollReusable is the contract of a reusable enrollment credential: it enrolls up to its
// maximum number of agents of its OS, each counted, and is refused past that count, for another
// OS or platform, once expired and once revoked; its fields survive a reopen.
func enrollReusable(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	s := enroll.New(enrollStore(st), enroll.WithClock(func() time.Time { return enrollStart }))
	e, tok, err := s.Create(ctx, enroll.Request{Group: "ward-3", Platform: enroll.PlatformAgent, Reusable: true,
		OS: "linux", MaxDevices: 2, TTL: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Reusable || e.OS != "linux" || e.MaxDevices != 2 || e.Owner != "ward-3" || e.State != enroll.StatePending {
		t.Fatalf("created %+v", e)
	}
	if _, err := s.RedeemAgent(ctx, tok, "windows", "d_w"); !errors.Is(err, enroll.ErrWrongPlatform) {
		t.Errorf("windows agent: %v, want ErrWrongPlatform", err)
	}
	if _, err := s.Redeem(ctx, tok, enroll.PlatformApple, ""); !errors.Is(err, enroll.ErrWrongPlatform) {
		t.Errorf("apple profile fetch: %v, want ErrWrongPlatform", err)
	}
	for i, d := range []string{"d_1", "d_2"} {
		got, err := s.RedeemAgent(ctx, tok, "linux", d)
		if err != nil {
			t.Fatalf("use %d: %v", i+1, err)
		}
		if got.Uses != i+1 || got.DeviceID != d {
			t.Errorf("use %d: %+v", i+1, got)
		}
	}
	if _, err := s.RedeemAgent(ctx, tok, "linux", "d_3"); !errors.Is(err, enroll.ErrExhausted) || !errors.Is(err, enroll.ErrUsed) {
		t.Errorf("past the maximum: %v, want ErrExhausted (an ErrUsed)", err)
	}
	st = Reopen(t, open, st, dir)
	s = enroll.New(enrollStore(st), enroll.WithClock(func() time.Time { return enrollStart }))
	got, err := s.Get(ctx, e.ID)
	if err != nil || !got.Reusable || got.OS != "linux" || got.MaxDevices != 2 || got.Uses != 2 || got.State != enroll.StateUsed {
		t.Errorf("after reopen: %+v, %v", got, err)
	}

	// Expiry and revocation refuse a credential that still has uses left.
	late := enroll.New(enrollStore(st), enroll.WithClock(func() time.Time { return enrollStart.Add(91 * 24 * time.Hour) }))
	_, tok2, err := s.Create(ctx, enroll.Request{Group: "g", Platform: enroll.PlatformAgent, Reusable: true, OS: "macos", MaxDevices: 5, TTL: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.RedeemAgent(ctx, tok2, "macos", "d_4"); !errors.Is(err, enroll.ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	e3, tok3, err := s.Create(ctx, enroll.Request{Group: "g", Platform: enroll.PlatformAgent, Reusable: true, OS: "windows", MaxDevices: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemAgent(ctx, tok3, "windows", "d_5"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke(ctx, e3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RedeemAgent(ctx, tok3, "windows", "d_6"); !errors.Is(err, enroll.ErrRevoked) {
		t.Errorf("revoked: %v", err)
	}
}

// enrollReusableConcurrent: concurrent enrollments never exceed the maximum.
func enrollReusableConcurrent(t *testing.T, open Opener) {
	ctx := context.Background()
	s, _, _ := newEnroll(t, open)
	e, tok, err := s.Create(ctx, enroll.Request{Group: "g", Platform: enroll.PlatformAgent, Reusable: true, OS: "linux", MaxDevices: 3})
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, exhausted := 0, 0
	for i := range n {
		wg.Go(func() {
			_, err := s.RedeemAgent(ctx, tok, "linux", fmt.Sprintf("d_%d", i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, enroll.ErrExhausted):
				exhausted++
			default:
				t.Errorf("unexpected: %v", err)
			}
		})
	}
	wg.Wait()
	got, _ := s.Get(ctx, e.ID)
	if ok != 3 || exhausted != n-3 || got.Uses != 3 {
		t.Errorf("ok=%d exhausted=%d uses=%d, want 3, %d, 3", ok, exhausted, got.Uses, n-3)
	}
}
