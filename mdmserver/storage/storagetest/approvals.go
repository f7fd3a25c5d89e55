package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/testclock"
	"github.com/halemdm/hale/mdmserver/approvals"
	"github.com/halemdm/hale/mdmserver/storage"
)

// testApprovals is the contract of approvals.Repository, and the two-person rule's steps over
// it: create, decide once, expire, list.
func testApprovals(t *testing.T, open Opener) {
	t.Run("repository", func(t *testing.T) { approvalsRepository(t, open) })
	t.Run("decide", func(t *testing.T) { approvalsDecide(t, open) })
	t.Run("expiry", func(t *testing.T) { approvalsExpiry(t, open) })
	t.Run("concurrent decisions: exactly one", func(t *testing.T) { approvalsConcurrentDecide(t, open) })
	t.Run("reopen", func(t *testing.T) { approvalsReopen(t, open) })
}

// approvalsStore narrows st to the approvals service's units of work, as the server does.
func approvalsStore(st storage.Store) approvals.Store {
	return storage.Scope(st, func(tx storage.Tx) approvals.Tx { return tx })
}

// approvalsClock is the tests' clock, at a fixed start.
func approvalsClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
}

// createApproval creates r at now, expiring after ttl, in a unit of work of its own.
func createApproval(ctx context.Context, st storage.Store, r approvals.Request, ttl time.Duration, now time.Time) (created *approvals.Request, err error) {
	err = st.Update(ctx, func(tx storage.Tx) error {
		created, err = approvals.Create(ctx, tx.Approvals(), r, ttl, now, nil)
		return err
	})
	return created, err
}

// decideApproval decides request id at now in a unit of work of its own; also, when not nil,
// runs after the decision in the same unit, as the caller's audit entry does.
func decideApproval(ctx context.Context, st storage.Store, id string, approve bool, decider approvals.Party, comment string, now time.Time, also func(*approvals.Request) error) (decided *approvals.Request, err error) {
	err = st.Update(ctx, func(tx storage.Tx) error {
		decided, err = approvals.Decide(ctx, tx.Approvals(), id, approve, decider, comment, now)
		if err != nil {
			return err
		}
		if also != nil {
			return also(decided)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return decided, nil
}

// by is a decider known only by its token, as before tokens had people.
func by(name, tokenID string) approvals.Party { return approvals.Party{Name: name, TokenID: tokenID} }

func approvalsRepository(t *testing.T, open Opener) {
	ctx := context.Background()
	st := Fresh(t, open)
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	a := approvals.Request{ID: "ap_a", Action: "wipe", DeviceID: "d1", Group: "icu", Reason: "lost", Mode: "full",
		State: approvals.StatePending, RequestedBy: "dana (t1)", RequesterTokenID: "t1", RequesterPerson: "dana",
		RequesterCreators: []string{"alex"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Params: []byte("sealed a")}
	b := approvals.Request{ID: "ap_b", Action: "wipe", DeviceID: "d2", State: approvals.StateApproved, RequesterTokenID: "t2",
		CreatedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Hour), DecidedBy: "eli (t3)", DeciderTokenID: "t3",
		DeciderPerson: "eli", DecidedAt: t0.Add(2 * time.Minute), Comment: "ok", CommandID: "cmd-1"}
	err := st.Update(ctx, func(tx storage.Tx) error {
		for _, r := range []approvals.Request{a, b} {
			if err := tx.Approvals().Put(ctx, &r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		r := tx.Approvals()
		got, err := r.Get(ctx, "ap_a")
		if err != nil || !sameApproval(*got, a) {
			t.Errorf("Get(ap_a) = %+v, %v; want %+v", got, err, a)
		}
		if _, err := r.Get(ctx, "ap_nope"); !errors.Is(err, approvals.ErrNotFound) {
			t.Errorf("Get(ap_nope): %v, want ErrNotFound", err)
		}
		list, err := r.List(ctx)
		if err != nil || len(list) != 2 {
			t.Fatalf("List = %+v, %v", list, err)
		}
		for _, got := range list {
			want := map[string]approvals.Request{"ap_a": a, "ap_b": b}[got.ID]
			if !sameApproval(got, want) {
				t.Errorf("listed %+v, want %+v", got, want)
			}
		}
		if err := r.Put(ctx, &a); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Put in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A failed unit of work leaves nothing: neither a new request nor a change to one.
	failed := errors.New("unit failed")
	err = st.Update(ctx, func(tx storage.Tx) error {
		c := a
		c.ID = "ap_c"
		if err := tx.Approvals().Put(ctx, &c); err != nil {
			return err
		}
		changed := a
		changed.State = approvals.StateRejected
		if err := tx.Approvals().Put(ctx, &changed); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatal(err)
	}
	err = st.View(ctx, func(tx storage.Tx) error {
		if _, err := tx.Approvals().Get(ctx, "ap_c"); !errors.Is(err, approvals.ErrNotFound) {
			t.Errorf("request of a failed unit: %v, want ErrNotFound", err)
		}
		if got, err := tx.Approvals().Get(ctx, "ap_a"); err != nil || got.State != approvals.StatePending {
			t.Errorf("request changed by a failed unit: %+v, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// sameApproval compares two requests field by field, Params included.
func sameApproval(a, b approvals.Request) bool {
	return a.ID == b.ID && a.Action == b.Action && a.DeviceID == b.DeviceID && a.Group == b.Group && a.Reason == b.Reason &&
		a.Mode == b.Mode && a.State == b.State && a.RequestedBy == b.RequestedBy && a.RequesterTokenID == b.RequesterTokenID &&
		a.RequesterPerson == b.RequesterPerson && slices.Equal(a.RequesterCreators, b.RequesterCreators) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.DecidedBy == b.DecidedBy &&
		a.DeciderTokenID == b.DeciderTokenID && a.DeciderPerson == b.DeciderPerson && a.DecidedAt.Equal(b.DecidedAt) &&
		a.Comment == b.Comment && a.CommandID == b.CommandID && string(a.Params) == string(b.Params)
}

func approvalsDecide(t *testing.T, open Opener) {
	st := Fresh(t, open)
	clock := approvalsClock()
	s := approvals.New(approvalsStore(st), approvals.WithClock(clock.Now))
	ctx := context.Background()
	req := approvals.Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a", Params: []byte("sealed")}
	r, err := createApproval(ctx, st, req, time.Hour, clock.Now())
	if err != nil || r.State != approvals.StatePending || r.ExpiresAt != clock.Now().Add(time.Hour) {
		t.Fatalf("create: %v %+v", err, r)
	}
	if _, err := decideApproval(ctx, st, r.ID, true, by("a", "tok-a"), "", clock.Now(), nil); !errors.Is(err, approvals.ErrSamePerson) {
		t.Fatalf("requester deciding: %v", err)
	}
	undo := errors.New("audit failed")
	if _, err := decideApproval(ctx, st, r.ID, true, by("b", "tok-b"), "", clock.Now(), func(*approvals.Request) error { return undo }); !errors.Is(err, undo) {
		t.Fatalf("failing hook: %v", err)
	}
	if got, _ := s.Get(ctx, r.ID); got.State != approvals.StatePending {
		t.Fatalf("a decision whose hook failed stuck: %s", got.State)
	}
	d, err := decideApproval(ctx, st, r.ID, true, by("b", "tok-b"), "ok", clock.Now(), nil)
	if err != nil || d.State != approvals.StateApproved || d.DecidedBy != "b" || string(d.Params) != "sealed" {
		t.Fatalf("approve: %v %+v", err, d)
	}
	if _, err := decideApproval(ctx, st, r.ID, false, by("c", "tok-c"), "", clock.Now(), nil); !errors.Is(err, approvals.ErrDecided) {
		t.Fatalf("deciding twice: %v", err)
	}
	if _, err := decideApproval(ctx, st, "ap_nope", true, by("c", "tok-c"), "", clock.Now(), nil); !errors.Is(err, approvals.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// The command it was carried out with is recorded on it.
	if err := s.SetCommand(ctx, r.ID, "cmd-1"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, r.ID); err != nil || got.CommandID != "cmd-1" || got.State != approvals.StateApproved {
		t.Fatalf("after SetCommand: %+v, %v", got, err)
	}
	if _, err := createApproval(ctx, st, approvals.Request{Action: "wipe", DeviceID: "d1"}, time.Hour, clock.Now()); err == nil {
		t.Fatal("a request without a requester was created")
	}
}

// A request nobody decides expires: it reads as expired and can no longer be approved.
func approvalsExpiry(t *testing.T, open Opener) {
	st := Fresh(t, open)
	clock := approvalsClock()
	s := approvals.New(approvalsStore(st), approvals.WithClock(clock.Now))
	ctx := context.Background()
	r, _ := createApproval(ctx, st, approvals.Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a"}, time.Hour, clock.Now())
	if p, err := s.Pending(ctx, "d1"); err != nil || p == nil || p.ID != r.ID {
		t.Fatalf("pending before expiry: %+v, %v", p, err)
	}
	clock.Advance(time.Hour)
	if _, err := decideApproval(ctx, st, r.ID, true, by("b", "tok-b"), "", clock.Now(), nil); !errors.Is(err, approvals.ErrExpired) {
		t.Fatalf("approving an expired request: %v", err)
	}
	list, err := s.List(ctx, approvals.StateExpired)
	if err != nil || len(list) != 1 || list[0].ID != r.ID || list[0].Params != nil {
		t.Fatalf("expired list: %v %+v", err, list)
	}
	if pending, _ := s.List(ctx, approvals.StatePending); len(pending) != 0 {
		t.Fatalf("pending: %+v", pending)
	}
	if p, err := s.Pending(ctx, "d1"); err != nil || p != nil {
		t.Fatalf("pending after expiry: %+v, %v", p, err)
	}
}

// Two second people approving one request at once: exactly one decision is recorded.
func approvalsConcurrentDecide(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	now := time.Now()
	r, err := createApproval(ctx, st, approvals.Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	const deciders = 8
	var wg sync.WaitGroup
	errs := make(chan error, deciders)
	for i := range deciders {
		wg.Go(func() {
			_, err := decideApproval(ctx, st, r.ID, true, by("b", fmt.Sprintf("tok-%d", i)), "", now, nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, approvals.ErrDecided):
			t.Errorf("decision: %v, want nil or ErrDecided", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d decisions succeeded, want exactly 1", ok)
	}
}

func approvalsReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	st := open(t, dir)
	first := st
	t.Cleanup(func() { _ = first.Close() }) // should the test end before Reopen closes it
	clock := approvalsClock()
	r, err := createApproval(ctx, st, approvals.Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a", Params: []byte("sealed")}, time.Hour, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decideApproval(ctx, st, r.ID, false, by("b", "tok-b"), "no", clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	st = Reopen(t, open, st, dir)
	got, err := approvals.New(approvalsStore(st), approvals.WithClock(clock.Now)).Get(ctx, r.ID)
	if err != nil || got.State != approvals.StateRejected || got.DecidedBy != "b" || got.Comment != "no" || string(got.Params) != "sealed" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
}
