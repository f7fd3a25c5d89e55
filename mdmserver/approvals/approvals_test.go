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

// by is a decider known only by its token, as before tokens had people.
func by(name, tokenID string) Party { return Party{Name: name, TokenID: tokenID} }

func TestDecide(t *testing.T) {
	s, clock := newStore(t)
	ctx := context.Background()
	req := Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a", Params: []byte("sealed")}
	r, err := s.Create(ctx, req, time.Hour, nil)
	if err != nil || r.State != StatePending || r.ExpiresAt != clock.Now().Add(time.Hour) {
		t.Fatalf("create: %v %+v", err, r)
	}
	if _, err := s.Decide(ctx, r.ID, true, by("a", "tok-a"), "", nil); !errors.Is(err, ErrSamePerson) {
		t.Fatalf("requester deciding: %v", err)
	}
	undo := errors.New("audit failed")
	if _, err := s.Decide(ctx, r.ID, true, by("b", "tok-b"), "", func(*bbolt.Tx, *Request) error { return undo }); !errors.Is(err, undo) {
		t.Fatalf("failing hook: %v", err)
	}
	if got, _ := s.Get(ctx, r.ID); got.State != StatePending {
		t.Fatalf("a decision whose hook failed stuck: %s", got.State)
	}
	d, err := s.Decide(ctx, r.ID, true, by("b", "tok-b"), "ok", nil)
	if err != nil || d.State != StateApproved || d.DecidedBy != "b" || string(d.Params) != "sealed" {
		t.Fatalf("approve: %v %+v", err, d)
	}
	if _, err := s.Decide(ctx, r.ID, false, by("c", "tok-c"), "", nil); !errors.Is(err, ErrDecided) {
		t.Fatalf("deciding twice: %v", err)
	}
	if _, err := s.Decide(ctx, "ap_nope", true, by("c", "tok-c"), "", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
}

// A request nobody decides expires: it reads as expired and can no longer be approved.
func TestExpiry(t *testing.T) {
	s, clock := newStore(t)
	ctx := context.Background()
	r, _ := s.Create(ctx, Request{Action: "wipe", DeviceID: "d1", RequesterTokenID: "tok-a"}, time.Hour, nil)
	clock.Advance(time.Hour)
	if _, err := s.Decide(ctx, r.ID, true, by("b", "tok-b"), "", nil); !errors.Is(err, ErrExpired) {
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

// The rule compares people, and the people who made each other's tokens.
func TestSecondPerson(t *testing.T) {
	dana := Party{TokenID: "t1", Person: "dana", Creators: []string{"alex", "bootstrap"}}
	for name, c := range map[string]struct {
		requester, decider Party
		want               error
	}{
		"same token":                  {dana, dana, ErrSamePerson},
		"same person, other token":    {dana, Party{TokenID: "t2", Person: "Dana"}, ErrSamePerson},
		"decider made the requester":  {dana, Party{TokenID: "t3", Person: "alex"}, ErrCreator},
		"decider's maker's maker":     {dana, Party{TokenID: "t4", Person: "bootstrap"}, ErrCreator},
		"requester made the decider":  {dana, Party{TokenID: "t5", Person: "x", Creators: []string{"dana", "alex"}}, ErrCreator},
		"second person":               {dana, Party{TokenID: "t6", Person: "eli", Creators: []string{"alex", "bootstrap"}}, nil},
		"stored without people":       {Party{TokenID: "t1"}, Party{TokenID: "t7"}, nil},
		"stored without people, same": {Party{TokenID: "t1"}, Party{TokenID: "t1"}, ErrSamePerson},
	} {
		if err := SecondPerson(c.requester, c.decider); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
