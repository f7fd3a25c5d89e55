package storagetest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
)

// inventoryWipe checks the unfinished wipe on the device record: ordered, left incomplete by its
// own command only, finished, listed by its state, and kept across a reopen.
func inventoryWipe(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	s := inventoryService(st, invT0)
	d, _ := s.Create(ctx, agentDevice("o", "g"))
	other, _ := s.Create(ctx, agentDevice("o", "g"))
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.OrderWipe("w1"); return nil }); err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	s = inventoryService(st, invT0)
	listed := func(w inventory.WipeState) []string {
		t.Helper()
		devs, next, err := s.List(ctx, inventory.Filter{Wipe: w}, "", 0)
		if err != nil || next != "" {
			t.Fatalf("List(wipe %s) = %v, %q, %v", w, devs, next, err)
		}
		n, err := s.Count(ctx, inventory.Filter{Wipe: w})
		if err != nil || n != len(devs) {
			t.Errorf("Count(wipe %s) = %d, %v; List gave %d", w, n, err, len(devs))
		}
		var ids []string
		for _, d := range devs {
			ids = append(ids, d.ID)
		}
		return ids
	}
	if got := listed(inventory.WipePending); len(got) != 1 || got[0] != d.ID {
		t.Fatalf("pending wipes after a reopen = %v, want [%s]", got, d.ID)
	}
	mark := func(id, cmd string) bool {
		t.Helper()
		marked := false
		err := st.Update(ctx, func(tx storage.Tx) error {
			var err error
			marked, err = inventory.MarkWipeIncomplete(ctx, tx.Inventory(), id, cmd, invT0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return marked
	}
	if mark(d.ID, "w0") || mark(other.ID, "w1") {
		t.Fatal("a command that is not the device's pending wipe marked it incomplete")
	}
	if !mark(d.ID, "w1") {
		t.Fatal("the pending wipe's answer did not mark it incomplete")
	}
	if mark(d.ID, "w1") {
		t.Fatal("an incomplete wipe was marked again")
	}
	if got := listed(inventory.WipeIncomplete); len(got) != 1 || got[0] != d.ID {
		t.Fatalf("incomplete wipes = %v", got)
	}
	if got := listed(inventory.WipePending); len(got) != 0 {
		t.Fatalf("pending wipes after the answer = %v", got)
	}
	// A new wipe finishes the job: pending again, then wiped with no unfinished wipe.
	if _, err := s.Update(ctx, d.ID, func(d *inventory.Device) error { d.OrderWipe("w2"); return nil }); err != nil {
		t.Fatal(err)
	}
	finish := func() bool {
		t.Helper()
		wiped := false
		err := st.Update(ctx, func(tx storage.Tx) error {
			var err error
			wiped, err = inventory.FinishWipe(ctx, tx.Inventory(), d.ID, invT0.Add(time.Hour))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return wiped
	}
	if !finish() {
		t.Fatal("FinishWipe did not report the device wiped")
	}
	got, _ := s.Get(ctx, d.ID)
	if got.State != inventory.StateWiped || got.Wipe != nil || !got.StateChangedAt.Equal(invT0.Add(time.Hour)) {
		t.Fatalf("after FinishWipe: %+v", got)
	}
	if finish() {
		t.Fatal("finishing a finished wipe reported it again")
	}
	if _, err := s.SetState(ctx, other.ID, inventory.StateUnenrolled, invT0); err != nil {
		t.Fatal(err)
	}
	err := st.Update(ctx, func(tx storage.Tx) error {
		_, err := inventory.FinishWipe(ctx, tx.Inventory(), other.ID, invT0)
		return err
	})
	if !errors.Is(err, inventory.ErrInvalidTransition) {
		t.Fatalf("finishing a wipe of an unenrolled device: %v", err)
	}
	if _, _, err := s.List(ctx, inventory.Filter{Wipe: "done"}, "", 0); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("unknown wipe filter: %v", err)
	}
}

// inventoryLinkEnrollment checks that an enrollment ID moves from an ended device to a new one,
// never from a live one, and that a refused link writes nothing.
func inventoryLinkEnrollment(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	first, err := s.LinkEnrollment(ctx, inventory.NewID(), "UDID-1", func(d *inventory.Device, isNew bool) error {
		if !isNew {
			t.Error("a first link is not new")
		}
		d.Platform, d.Owner = inventory.PlatformApple, "alice"
		return nil
	})
	if err != nil || first.EnrollmentID != "UDID-1" || first.State != inventory.StateActive || !first.EnrolledAt.Equal(invT0) {
		t.Fatalf("first link = %+v, %v", first, err)
	}
	second := inventory.NewID()
	fill := func(d *inventory.Device, isNew bool) error { d.Platform = inventory.PlatformApple; return nil }
	if _, err := s.LinkEnrollment(ctx, second, "UDID-1", fill); !errors.Is(err, inventory.ErrConflict) {
		t.Fatalf("link of a live device's enrollment: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.LinkEnrollment(ctx, first.ID, "UDID-1", func(*inventory.Device, bool) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	s.SetState(ctx, first.ID, inventory.StateWiped, invT0)
	got, err := s.LinkEnrollment(ctx, second, "UDID-1", fill)
	if err != nil || got.ID != second {
		t.Fatalf("link after the holder was wiped = %+v, %v", got, err)
	}
	if old, _ := s.Get(ctx, first.ID); old.EnrollmentID != "" || old.Owner != "alice" {
		t.Errorf("the ended holder = %+v, want its record without the enrollment", old)
	}
	checkIndexes(t, st, "enrollment:UDID-1")
	if _, err := s.LinkEnrollment(ctx, "", "x", fill); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("link without an ID: %v", err)
	}
}

func inventoryListPaging(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	groups, owners := []string{"icu", "er", "ward"}, []string{"alice", "bob", "carol", "dave"}
	states := []inventory.State{inventory.StateActive, inventory.StateActive, inventory.StateLocked, inventory.StateLost, inventory.StateRetired}
	all := make([]inventory.Device, 0, 2500)
	err := st.Update(ctx, func(tx storage.Tx) error {
		for i := range 2500 {
			d := &inventory.Device{ID: inventory.NewID(), Platform: inventory.PlatformAgent, Group: groups[i%3], Owner: owners[i%4],
				State: states[i%5], EnrolledAt: invT0, StateChangedAt: invT0}
			if err := inventory.Save(ctx, tx.Inventory(), d, invT0); err != nil {
				return err
			}
			all = append(all, *d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f     inventory.Filter
		limit int
	}{
		{inventory.Filter{}, 0},
		{inventory.Filter{}, 333},
		{inventory.Filter{Group: "icu"}, 100},
		{inventory.Filter{State: inventory.StateLocked, Owner: "carol"}, 7},
		{inventory.Filter{Group: "er", Owner: "bob", State: inventory.StateActive}, 1},
		{inventory.Filter{Owner: "nobody"}, 10},
		{inventory.Filter{}, 5000}, // capped at MaxLimit
	} {
		want := map[string]bool{}
		for _, d := range all {
			if tc.f.Matches(&d) {
				want[d.ID] = true
			}
		}
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			page, next, err := s.List(ctx, tc.f, cursor, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			wantLen := tc.limit
			if wantLen <= 0 {
				wantLen = inventory.DefaultLimit
			}
			if len(page) > min(wantLen, inventory.MaxLimit) {
				t.Fatalf("%+v: page of %d", tc.f, len(page))
			}
			for _, d := range page {
				if seen[d.ID] {
					t.Fatalf("%+v: %s returned twice", tc.f, d.ID)
				}
				if !want[d.ID] {
					t.Fatalf("%+v: %s does not match", tc.f, d.ID)
				}
				seen[d.ID] = true
			}
			if next == "" {
				break
			}
			if len(page) == 0 {
				t.Fatalf("%+v: empty page with a next cursor", tc.f)
			}
			cursor = next
		}
		if len(seen) != len(want) {
			t.Errorf("%+v: saw %d of %d matches in %d pages", tc.f, len(seen), len(want), pages)
		}
		n, err := s.Count(ctx, tc.f)
		if err != nil || n != len(want) {
			t.Errorf("Count(%+v) = %d, %v; want %d", tc.f, n, err, len(want))
		}
	}
	for _, bad := range []string{"!!", "djE6eA", "x" + string(make([]byte, 200))} {
		if _, _, err := s.List(ctx, inventory.Filter{}, bad, 10); !errors.Is(err, inventory.ErrBadCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

func inventoryListCursorSurvivesInserts(t *testing.T, open Opener) {
	ctx := context.Background()
	_, s := freshInventory(t, open)
	orig := map[string]bool{}
	for range 300 {
		d, _ := s.Create(ctx, agentDevice("o", "g"))
		orig[d.ID] = true
	}
	seen := map[string]int{}
	cursor := ""
	for {
		page, next, err := s.List(ctx, inventory.Filter{}, cursor, 50)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			seen[d.ID]++
		}
		for range 20 { // churn between pages
			s.Create(ctx, agentDevice("o", "g"))
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for id := range orig {
		if seen[id] != 1 {
			t.Errorf("%s seen %d times", id, seen[id])
		}
	}
}

// forEachDevices is more than two of Service.ForEach's read chunks (512 records each), so the
// pass crosses chunk boundaries.
const forEachDevices = 512*2 + 7

func inventoryForEach(t *testing.T, open Opener) {
	ctx := context.Background()
	st, s := freshInventory(t, open)
	want := map[string]bool{}
	for range forEachDevices {
		d, _ := s.Create(ctx, agentDevice("o", "g"))
		want[d.ID] = true
	}
	seen := map[string]bool{}
	prev := ""
	// fn writes to the same store: ForEach must not hold a transaction while calling it.
	err := s.ForEach(ctx, func(d *inventory.Device) error {
		if seen[d.ID] || d.ID <= prev {
			t.Fatalf("%s out of order or repeated", d.ID)
		}
		seen[d.ID], prev = true, d.ID
		_, err := s.SetState(ctx, d.ID, inventory.StateLocked, invT0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(want) {
		t.Errorf("ForEach saw %d of %d", len(seen), len(want))
	}
	if n, _ := s.Count(ctx, inventory.Filter{State: inventory.StateLocked}); n != len(want) {
		t.Errorf("%d locked, want %d", n, len(want))
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.ForEach(ctx, func(*inventory.Device) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("error did not stop the pass: %v after %d calls", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.ForEach(cctx, func(*inventory.Device) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// The repository's own pass starts after the given ID and stops at fn's error.
	ids := slices.Sorted(maps.Keys(want))
	var first string
	err = st.View(ctx, func(tx storage.Tx) error {
		return tx.Inventory().ForEach(ctx, ids[100], func(d *inventory.Device) error { first = d.ID; return stop })
	})
	if !errors.Is(err, stop) || first != ids[101] {
		t.Errorf("ForEach after %s: first %s, %v; want %s and the stop error", ids[100], first, err, ids[101])
	}
	err = Fresh(t, open).View(ctx, func(tx storage.Tx) error {
		return tx.Inventory().ForEach(ctx, "", func(*inventory.Device) error { return stop })
	})
	if err != nil {
		t.Errorf("ForEach of an empty inventory: %v", err)
	}
}
