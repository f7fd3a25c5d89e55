package storagetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testBreakGlass is the contract of breakglass.Repository: put, get, replace, list oldest
// first, not found, nothing left by a failed unit of work, durable across a reopen.
func testBreakGlass(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	a := &breakglass.Use{ID: "bg_a", DeviceID: "d1", Person: "dana", Reason: "code blue, bed 4", RequestedBy: "device:d1",
		Channel: breakglass.ChannelDevice, Overrides: []string{"noncompliant_past_grace", "os_too_old"}, May: []string{"os_too_old"},
		Policy: "hipaa", PolicyVersion: 2, StartedAt: t0.Add(time.Hour), ExpiresAt: t0.Add(5 * time.Hour)}
	b := &breakglass.Use{ID: "bg_b", DeviceID: "d2", Person: "eli", Reason: "granted", RequestedBy: "token:t1",
		Channel: breakglass.ChannelSecurity, GrantedBy: "sam", Overrides: []string{"report_stale"}, May: []string{"report_stale"},
		StartedAt: t0, ExpiresAt: t0.Add(time.Hour), EndedAt: t0.Add(time.Hour), EndReason: breakglass.EndExpired,
		Review: &breakglass.Review{Decision: breakglass.ReviewApproved, By: "rita", TokenID: "t9", At: t0.Add(2 * time.Hour), Note: "ok"}}
	err := st.Update(ctx, func(tx storage.Tx) error {
		for _, u := range []*breakglass.Use{a, b} {
			if err := tx.BreakGlass().Put(ctx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failed unit of work leaves nothing.
	boom := errors.New("boom")
	if err := st.Update(ctx, func(tx storage.Tx) error {
		if err := tx.BreakGlass().Put(ctx, &breakglass.Use{ID: "bg_c", StartedAt: t0}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	check := func(st storage.Store) {
		t.Helper()
		err := st.View(ctx, func(tx storage.Tx) error {
			got, err := tx.BreakGlass().Get(ctx, "bg_b")
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, b) {
				t.Errorf("Get = %+v, want %+v", got, b)
			}
			if _, err := tx.BreakGlass().Get(ctx, "bg_c"); !errors.Is(err, breakglass.ErrNotFound) {
				t.Errorf("Get of a rolled-back use = %v, want ErrNotFound", err)
			}
			all, err := tx.BreakGlass().List(ctx)
			if err != nil {
				return err
			}
			if len(all) != 2 || all[0].ID != "bg_b" || all[1].ID != "bg_a" || !reflect.DeepEqual(all[1], a) {
				t.Errorf("List = %+v, want bg_b then bg_a", all)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check(st)
	// Replace: a review is written over the use.
	a.Review = &breakglass.Review{Decision: breakglass.ReviewRevoked, By: "rita", At: t0.Add(2 * time.Hour)}
	a.EndedAt, a.EndReason = t0.Add(2*time.Hour), breakglass.EndRevoked
	if err := st.Update(ctx, func(tx storage.Tx) error { return tx.BreakGlass().Put(ctx, a) }); err != nil {
		t.Fatal(err)
	}
	if err := st.View(ctx, func(tx storage.Tx) error { return tx.BreakGlass().Put(ctx, a) }); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("Put in a View = %v, want ErrReadOnly", err)
	}
	check(Reopen(t, open, st, dir))
}
