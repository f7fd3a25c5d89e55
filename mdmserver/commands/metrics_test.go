package commands

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/micromdm/nanomdm/push"
	"github.com/micromdm/nanomdm/push/nanopush"
	pushsvc "github.com/micromdm/nanomdm/push/service"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.etcd.io/bbolt"

	"github.com/halemdm/hale/mdmserver/pushcert"
)

// recount counts the stored records per state the slow way, for comparison.
func recount(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, st := range States {
		got[string(st)] = 0
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			got[stateOfRecord(v)]++
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The in-memory state counts follow every kind of write, and a store opened again on the same
// file counts the same.
func TestStateCountsFollowEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	check := func(step string) {
		t.Helper()
		if got, want := s.StateCounts(), recount(t, s); !maps.Equal(got, want) {
			t.Fatalf("%s: counts %v, stored %v", step, got, want)
		}
	}
	check("empty")
	now := time.Now().UTC()
	for i := range 4 {
		if err := s.Put(ctx, &Record{UUID: fmt.Sprint("C", i), EnrollmentID: "U1", State: StateQueued, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	// Put over an existing record replaces its state.
	if err := s.Put(ctx, &Record{UUID: "C0", EnrollmentID: "U1", State: StatePushed, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	check("put")
	if _, err := s.Update(ctx, "U1", "C1", func(r *Record) { r.State = StatePushed }); err != nil {
		t.Fatal(err)
	}
	check("update")
	if _, err := s.saveResult(&Result{EnrollmentID: "U1", CommandUUID: "C0", Status: "Acknowledged", ReceivedAt: now}, nil); err != nil {
		t.Fatal(err)
	}
	// A result whose transaction fails moves nothing.
	boom := errors.New("boom")
	if _, err := s.saveResult(&Result{EnrollmentID: "U1", CommandUUID: "C1", Status: "Error", ReceivedAt: now},
		func(*bbolt.Tx, *Result) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	check("results")
	if _, err := s.CancelOpen(ctx, "U1", "re-enrolled", now); err != nil {
		t.Fatal(err)
	}
	check("cancel")
	if got := s.StateCounts(); got["cancelled"] != 3 || got["acknowledged"] != 1 || got["queued"] != 0 {
		t.Fatalf("counts %v", got)
	}
	again, err := NewStore(s.db)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := again.StateCounts(), s.StateCounts(); !maps.Equal(got, want) {
		t.Fatalf("reopened: %v, was %v", got, want)
	}
}

// pusherFunc is a push.Pusher answering with fn.
type pusherFunc func(ids []string) (map[string]*push.Response, error)

func (f pusherFunc) Push(_ context.Context, ids []string) (map[string]*push.Response, error) {
	return f(ids)
}

// Each push counts once, under the class of its outcome.
func TestPushResults(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	apnsRefused := fmt.Errorf("push HTTP status: 410: %w", &nanopush.JSONPushError{Reason: "Unregistered"})
	for _, tc := range []struct {
		result string
		push   pusherFunc
	}{
		{pushSent, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Id: "apns-1"}}, nil
		}},
		{pushNoCert, func([]string) (map[string]*push.Response, error) {
			return nil, fmt.Errorf("retrieving push cert for topic %q: %w", "t", pushcert.ErrNotFound)
		}},
		{pushNoToken, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Err: pushsvc.ErrIdNotFound}}, nil
		}},
		{pushNoToken, func([]string) (map[string]*push.Response, error) { return map[string]*push.Response{}, nil }},
		{pushRejected, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Err: apnsRefused}}, nil
		}},
		{pushFailed, func(ids []string) (map[string]*push.Response, error) {
			return map[string]*push.Response{ids[0]: {Err: context.DeadlineExceeded}}, nil
		}},
	} {
		reg := prometheus.NewRegistry()
		d := NewDispatcher(s, nil, tc.push, WithPushMetrics(reg))
		if err := s.Put(ctx, &Record{UUID: "C", EnrollmentID: "U", State: StateQueued}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Push(ctx, "U", "C"); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{pushSent, pushNoCert, pushNoToken, pushRejected, pushFailed} {
			want := 0.0
			if r == tc.result {
				want = 1
			}
			if got := testutil.ToFloat64(d.pushes.WithLabelValues(r)); got != want {
				t.Errorf("%s push: %s = %v, want %v", tc.result, r, got, want)
			}
		}
	}
	// Without a pusher at all, there is no push certificate.
	reg := prometheus.NewRegistry()
	d := NewDispatcher(s, nil, nil, WithPushMetrics(reg))
	d.Push(ctx, "U", "C")
	if got := testutil.ToFloat64(d.pushes.WithLabelValues(pushNoCert)); got != 1 {
		t.Errorf("push without a pusher: no_push_cert = %v", got)
	}
}
