package breakglass_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/access"
	"github.com/halemdm/hale/mdmserver/audit"
	"github.com/halemdm/hale/mdmserver/breakglass"
	"github.com/halemdm/hale/mdmserver/inventory"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/policies"
)

// TestRefreshFollowsThePrimary: a replica's index, on the primary's store, gets a use's grant
// after Refresh, loses it when the primary revokes it, keeps a newer use's grant when an old
// use changes late, and denies by itself past expiry; the replica writes nothing and sends
// nothing.
func TestRefreshFollowsThePrimary(t *testing.T) {
	f := newFixture(t)
	f.policy.BreakGlass.MaxUses = 5
	ctx := context.Background()
	replicaIndex := access.NewIndex(access.WithClock(f.clock.Now))
	replicaIndex.MarkLoaded()
	d := &access.Decision{DeviceID: "d1", State: "active", ReportedAt: t0, StaleAt: t0.Add(48 * time.Hour),
		Posture: &policies.Posture{Platform: policies.PlatformIOS, ReportedAt: t0},
		Verdict: policies.Verdict{Reasons: []policies.Reason{{Code: policies.CodeOSTooOld}}, NoncompliantSince: t0.Add(-48 * time.Hour), GraceUntil: t0.Add(-24 * time.Hour)}}
	replicaIndex.Put(d, f.clock.Now())
	// The replica's service never starts or ends a use: no devices, policy or transmitter.
	replica := breakglass.New(storage.Scope(f.st, func(tx storage.Tx) breakglass.Tx { return tx }), replicaIndex, devices{},
		func(*inventory.Device) (*policies.Policy, error) { return nil, errors.New("replica: no policy") }, nil,
		breakglass.WithClock(f.clock.Now), breakglass.WithAfterFunc(func(time.Duration, func()) func() bool {
			t.Error("the replica set a timer")
			return func() bool { return false }
		}))
	lookup := func() access.Answer { return replicaIndex.Lookup("d1", f.clock.Now()) }

	u, err := f.svc.Start(ctx, byDevice("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if lookup().Allow {
		t.Fatal("the replica allows d1 before Refresh: the test proves nothing")
	}
	pending, audited := f.tr.Pending(f.stream), len(f.auditActions(t))
	if err := replica.Refresh(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if a := lookup(); !a.Allow || a.BreakGlass == nil || a.BreakGlass.ID != u.ID || !a.BreakGlass.ExpiresAt.Equal(u.ExpiresAt) {
		t.Fatalf("replica answer after Refresh %+v", a)
	}

	// The primary revokes it: after Refresh the replica denies.
	if _, err := f.svc.Review(ctx, u.ID, breakglass.ReviewRevoked, "no", audit.Entry{Actor: "token:t2", Person: "rita"}); err != nil {
		t.Fatal(err)
	}
	pending++
	audited += 2 // the end and the review
	if err := replica.Refresh(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if a := lookup(); a.Allow || a.BreakGlass != nil {
		t.Fatalf("replica answer after revocation %+v", a)
	}

	// A second use; then the first one's record arrives again (a late change to an old use):
	// the second's grant stays.
	f.clock.Advance(time.Minute)
	u2, err := f.svc.Start(ctx, byDevice("d1"))
	if err != nil {
		t.Fatal(err)
	}
	pending++
	audited++
	for _, id := range []string{u2.ID, u.ID} {
		if err := replica.Refresh(ctx, id); err != nil {
			t.Fatal(err)
		}
		if a := lookup(); !a.Allow || a.BreakGlass == nil || a.BreakGlass.ID != u2.ID {
			t.Fatalf("after Refresh(%s) the replica answers %+v, want allowed by %s", id, a, u2.ID)
		}
	}
	// Past its expiry the replica denies without being told (the primary's timer then ends it).
	f.clock.Set(u2.ExpiresAt)
	if lookup().Allow {
		t.Fatal("the replica allows past the use's expiry")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.tr.Pending(f.stream) != pending+1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	pending++
	audited++
	if err := replica.Refresh(ctx, u2.ID); err != nil {
		t.Fatal(err)
	}
	if a := lookup(); a.Allow || a.BreakGlass != nil {
		t.Fatalf("replica answer after the use ended %+v", a)
	}

	// Everything sent and audited came from the primary.
	if got := f.tr.Pending(f.stream); got != pending {
		t.Fatalf("%d events pending, want %d", got, pending)
	}
	if got := f.auditActions(t); len(got) != audited {
		t.Fatalf("audit %s: %d entries, want %d", strings.Join(got, "|"), len(got), audited)
	}
	if err := replica.Refresh(ctx, "no-such-use"); !errors.Is(err, breakglass.ErrNotFound) {
		t.Fatalf("Refresh of a missing use: %v, want ErrNotFound", err)
	}
}

// TestRefreshAllLoadsWithoutWriting: a replica loading every use puts those in force into its
// index, leaves the expired ones out and, unlike Load, ends nothing.
func TestRefreshAllLoadsWithoutWriting(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u, err := f.svc.Start(ctx, byDevice("d1"))
	if err != nil {
		t.Fatal(err)
	}
	req := byDevice("d3")
	req.Duration = time.Hour
	short, err := f.svc.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	f.svc.Close() // the primary is down: nobody ends the short use at its expiry
	f.clock.Set(t0.Add(2 * time.Hour))
	pending, audited := f.tr.Pending(f.stream), len(f.auditActions(t))

	replicaIndex := access.NewIndex(access.WithClock(f.clock.Now))
	replicaIndex.MarkLoaded()
	for _, id := range []string{"d1", "d3"} {
		replicaIndex.Put(&access.Decision{DeviceID: id, State: "active", ReportedAt: t0, StaleAt: t0.Add(48 * time.Hour),
			Posture: &policies.Posture{Platform: policies.PlatformIOS, ReportedAt: t0},
			Verdict: policies.Verdict{Reasons: []policies.Reason{{Code: policies.CodeOSTooOld}}, NoncompliantSince: t0.Add(-48 * time.Hour), GraceUntil: t0.Add(-24 * time.Hour)}}, f.clock.Now())
	}
	replica := breakglass.New(storage.Scope(f.st, func(tx storage.Tx) breakglass.Tx { return tx }), replicaIndex, devices{}, nil, nil,
		breakglass.WithClock(f.clock.Now))
	if err := replica.RefreshAll(ctx); err != nil {
		t.Fatal(err)
	}
	if a := replicaIndex.Lookup("d1", f.clock.Now()); !a.Allow || a.BreakGlass == nil || a.BreakGlass.ID != u.ID {
		t.Fatalf("d1 on the replica %+v", a)
	}
	if a := replicaIndex.Lookup("d3", f.clock.Now()); a.Allow || replicaIndex.BreakGlass("d3") != nil {
		t.Fatalf("d3 (expired) on the replica %+v", a)
	}
	if got, _ := f.svc.Get(ctx, short.ID); !got.EndedAt.IsZero() {
		t.Fatalf("RefreshAll ended a use: %+v", got)
	}
	if f.tr.Pending(f.stream) != pending || len(f.auditActions(t)) != audited {
		t.Fatal("RefreshAll sent an event or wrote an audit entry")
	}
}
