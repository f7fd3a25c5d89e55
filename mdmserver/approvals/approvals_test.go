package approvals

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/internal/testclock"
)

func newStore(t *testing.T) (*Store, *testclock.Clock) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "a.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := testclock.New(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	s, err := New(db, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	return s, clock
}

func TestDecide(t *testing.T) {
	s, clock := newStore(t)
	ctx := context.Background()
	req := Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a", Params: []byte("sealed")}
	r, err := s.Create(ctx, req, time.Hour, nil)
	if err != nil || r.State != StatePending || r.ExpiresAt != clock.Now().Add(time.Hour) {
		t.Fatalf("create: %v %+v", err, r)
	}
	if _, err := s.Decide(ctx, r.ID, true, "a", "tok-a", "", nil); !errors.Is(err, ErrSamePerson) {
		t.Fatalf("requester deciding: %v", err)
	}
	undo := errors.New("audit failed")
	if _, err := s.Decide(ctx, r.ID, true, "b", "tok-b", "", func(*bbolt.Tx, *Request) error { return undo }); !errors.Is(err, undo) {
		t.Fatalf("failing hook: %v", err)
	}
	if got, _ := s.Get(ctx, r.ID); got.State != StatePending {
		t.Fatalf("a decision whose hook failed stuck: %s", got.State)
	}
	d, err := s.Decide(ctx, r.ID, true, "b", "tok-b", "ok", nil)
	if err != nil || d.State != StateApproved || d.DecidedBy != "b" || string(d.Params) != "sealed" {
		t.Fatalf("approve: %v %+v", err, d)
	}
	if _, err := s.Decide(ctx, r.ID, false, "c", "tok-c", "", nil); !errors.Is(err, ErrDecided) {
		t.Fatalf("deciding twice: %v", err)
	}
	if _, err := s.Decide(ctx, "ap_nope", true, "c", "tok-c", "", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

// A request nobody decides expires: it reads as expired and can no longer be approved.
func TestExpiry(t *testing.T) {
	s, clock := newStore(t)
	ctx := context.Background()
	r, _ := s.Create(ctx, Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a"}, time.Hour, nil)
	clock.Advance(time.Hour)
	if _, err := s.Decide(ctx, r.ID, true, "b", "tok-b", "", nil); !errors.Is(err, ErrExpired) {
		t.Fatalf("approving an expired request: %v", err)
	}
	list, err := s.List(ctx, StateExpired)
	if err != nil || len(list) != 1 || list[0].ID != r.ID || list[0].Params != nil {
		t.Fatalf("expired list: %v %+v", err, list)
	}
	if pending, _ := s.List(ctx, StatePending); len(pending) != 0 {
		t.Fatalf("pending: %+v", pending)
	}
}
