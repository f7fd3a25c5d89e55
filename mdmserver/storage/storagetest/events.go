package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/signing"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/posture"
)

// testEvents is the contract of events.Repository (streams, subject marks, outboxes), and an
// emission committed in a unit of work with other writes.
func testEvents(t *testing.T, open Opener) {
	t.Run("streams", func(t *testing.T) { eventStreams(t, open) })
	t.Run("subjects", func(t *testing.T) { eventSubjects(t, open) })
	t.Run("outbox", func(t *testing.T) { eventOutbox(t, open) })
	t.Run("failed unit of work leaves nothing", func(t *testing.T) { eventRollback(t, open) })
	t.Run("concurrent enqueues", func(t *testing.T) { eventConcurrent(t, open) })
	t.Run("emission in a unit of work", func(t *testing.T) { eventEmission(t, open) })
}

func eventStreams(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	full := events.StreamRecord{
		ID: "ss_b", Owner: "tok_1", Delivery: "push", EndpointURL: "https://receiver.example/ssf", Audience: "aud",
		EventsRequested: []string{posture.EventSessionRevoked}, Description: "ward 7", AuthSealed: []byte{1, 2, 3},
		Status: events.StatusPaused, StatusReason: "maintenance", Listed: true, Subjects: 2, Rev: 7, CreatedAt: created,
		VerifiedAt: created.Add(time.Minute), LastDeliveredAt: created.Add(2 * time.Minute),
		LastError: "receiver refused: 503", LastErrorAt: created.Add(3 * time.Minute),
	}
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Events()
		if err := r.PutStream(ctx, &full); err != nil {
			return err
		}
		return r.PutStream(ctx, &events.StreamRecord{ID: "ss_a", Delivery: "poll", Audience: "poller", CreatedAt: created})
	})
	check := func(st storage.Store) {
		t.Helper()
		view(t, st, func(ctx context.Context, tx storage.Tx) error {
			r := tx.Events()
			recs, err := r.Streams(ctx)
			if err != nil {
				return err
			}
			if len(recs) != 2 || recs[0].ID != "ss_a" || recs[1].ID != "ss_b" {
				t.Errorf("Streams = %+v, want ss_a then ss_b", recs)
			}
			got, err := r.Stream(ctx, "ss_b")
			if err != nil {
				return err
			}
			if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", full) {
				t.Errorf("Stream = %+v\nwant %+v", *got, full)
			}
			if _, err := r.Stream(ctx, "ss_missing"); !errors.Is(err, events.ErrNotFound) {
				t.Errorf("Stream of a missing ID: %v, want ErrNotFound", err)
			}
			if err := r.PutStream(ctx, &full); !errors.Is(err, storage.ErrReadOnly) {
				t.Errorf("PutStream in a View: %v, want ErrReadOnly", err)
			}
			return nil
		})
	}
	check(st)
	st = Reopen(t, open, st, dir)
	check(st)
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.Events().DeleteStream(ctx, "ss_b") })
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		recs, err := tx.Events().Streams(ctx)
		if len(recs) != 1 || recs[0].ID != "ss_a" {
			t.Errorf("after delete: %+v", recs)
		}
		return err
	})
}

func eventSubjects(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Events()
		for _, s := range []struct {
			stream, device string
			mark           events.SubjectMark
		}{{"ss_a", "d1", events.SubjectListed}, {"ss_a", "d2", events.SubjectExcluded}, {"ss_ab", "d1", events.SubjectExcluded}} {
			if err := r.PutSubject(ctx, s.stream, s.device, s.mark); err != nil {
				return err
			}
		}
		if err := r.PutSubject(ctx, "ss_a", "d3", events.SubjectAbsent); err == nil {
			t.Error("PutSubject stored the absent mark")
		}
		return nil
	})
	st = Reopen(t, open, st, dir)
	marks := func(want map[string]events.SubjectMark) {
		t.Helper()
		view(t, st, func(ctx context.Context, tx storage.Tx) error {
			for k, w := range want {
				var stream, device string
				fmt.Sscanf(k, "%s %s", &stream, &device)
				if m, err := tx.Events().Subject(ctx, stream, device); err != nil || m != w {
					t.Errorf("Subject(%s) = %v, %v; want %v", k, m, err, w)
				}
			}
			return nil
		})
	}
	marks(map[string]events.SubjectMark{"ss_a d1": events.SubjectListed, "ss_a d2": events.SubjectExcluded,
		"ss_ab d1": events.SubjectExcluded, "ss_a d3": events.SubjectAbsent})
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.Events().DeleteSubject(ctx, "ss_a", "d1") })
	marks(map[string]events.SubjectMark{"ss_a d1": events.SubjectAbsent, "ss_a d2": events.SubjectExcluded})
	// Clearing one stream's marks leaves a stream whose ID it prefixes alone.
	update(t, st, func(ctx context.Context, tx storage.Tx) error { return tx.Events().ClearSubjects(ctx, "ss_a") })
	marks(map[string]events.SubjectMark{"ss_a d2": events.SubjectAbsent, "ss_ab d1": events.SubjectExcluded})
}

func eventOutbox(t *testing.T, open Opener) {
	dir := t.TempDir()
	st := open(t, dir)
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Events()
		for i := range 5 {
			for _, id := range []string{"ss_a", "ss_ab"} {
				if err := r.Enqueue(ctx, id, fmt.Sprintf("%s-%d", id, i), "set"); err != nil {
					return err
				}
			}
		}
		return nil
	})
	st = Reopen(t, open, st, dir)
	var first events.QueuedSET
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Events()
		all, err := r.Queued(ctx, "ss_a", 0)
		if err != nil {
			return err
		}
		if len(all) != 5 {
			t.Fatalf("Queued(all) = %d SETs, want 5", len(all))
		}
		for i, q := range all {
			if q.JTI != fmt.Sprintf("ss_a-%d", i) || q.SET != "set" || i > 0 && q.Seq <= all[i-1].Seq {
				t.Errorf("SET %d = %+v: not in emission order", i, q)
			}
		}
		first = all[0]
		if two, err := r.Queued(ctx, "ss_a", 2); err != nil || len(two) != 2 || two[1].JTI != "ss_a-1" {
			t.Errorf("Queued(2) = %+v, %v", two, err)
		}
		if n, err := r.QueueLen(ctx, "ss_ab"); err != nil || n != 5 {
			t.Errorf("QueueLen = %d, %v", n, err)
		}
		if n, err := r.QueueLen(ctx, "ss_none"); err != nil || n != 0 {
			t.Errorf("QueueLen of an empty outbox = %d, %v", n, err)
		}
		if lens, err := r.QueueLens(ctx); err != nil || len(lens) != 2 || lens["ss_a"] != 5 || lens["ss_ab"] != 5 {
			t.Errorf("QueueLens = %v, %v", lens, err)
		}
		if err := r.Enqueue(ctx, "ss_a", "x", "set"); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("Enqueue in a View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Events()
		if err := r.Dequeue(ctx, "ss_a", first.Seq); err != nil {
			return err
		}
		if err := r.Dequeue(ctx, "ss_a", first.Seq); err != nil { // gone already: no error
			return err
		}
		return r.ClearOutbox(ctx, "ss_ab")
	})
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		lens, err := tx.Events().QueueLens(ctx)
		if lens["ss_a"] != 4 || lens["ss_ab"] != 0 {
			t.Errorf("after dequeue and clear: %v", lens)
		}
		return err
	})
}

func eventRollback(t *testing.T, open Opener) {
	st := Fresh(t, open)
	boom := errors.New("boom")
	err := st.Update(context.Background(), func(tx storage.Tx) error {
		ctx := context.Background()
		r := tx.Events()
		if err := r.PutStream(ctx, &events.StreamRecord{ID: "ss_a", Delivery: "poll"}); err != nil {
			return err
		}
		if err := r.PutSubject(ctx, "ss_a", "d1", events.SubjectListed); err != nil {
			return err
		}
		if err := r.Enqueue(ctx, "ss_a", "j", "set"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		r := tx.Events()
		recs, _ := r.Streams(ctx)
		m, _ := r.Subject(ctx, "ss_a", "d1")
		n, err := r.QueueLen(ctx, "ss_a")
		if len(recs) != 0 || m != events.SubjectAbsent || n != 0 {
			t.Errorf("a failed unit of work left %d streams, mark %v, %d SETs", len(recs), m, n)
		}
		return err
	})
}

func eventConcurrent(t *testing.T, open Opener) {
	st := Fresh(t, open)
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				err := st.Update(context.Background(), func(tx storage.Tx) error {
					return tx.Events().Enqueue(context.Background(), "ss_a", fmt.Sprintf("%d-%d", w, i), "set")
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	view(t, st, func(ctx context.Context, tx storage.Tx) error {
		all, err := tx.Events().Queued(ctx, "ss_a", 0)
		seen := map[uint64]bool{}
		for _, q := range all {
			seen[q.Seq] = true
		}
		if len(all) != writers*each || len(seen) != writers*each {
			t.Errorf("%d SETs with %d distinct sequence numbers after %d enqueues", len(all), len(seen), writers*each)
		}
		return err
	})
}

// eventEmission commits an emission with another write in one unit of work: when the unit
// fails, neither is there; when it commits, both are, and the stream count is the streams
// written.
func eventEmission(t *testing.T, open Opener) {
	st := Fresh(t, open)
	ctx := context.Background()
	keys, err := signing.Open(ctx, keyStore(st), sealKeyOf(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := events.New(storage.Scope(st, func(tx storage.Tx) events.Tx { return tx }), keys, "https://hale.example", sealKeyOf(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	s, err := tr.CreateStream(ctx, events.Caller{ID: "tok_receiver"}, events.Config{Audience: "poller"})
	if err != nil {
		t.Fatal(err)
	}
	em, err := tr.Prepare(ctx, events.Event{Type: posture.EventSessionRevoked, DeviceID: "d1", Initiator: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = st.Update(ctx, func(tx storage.Tx) error {
		if _, err := em.Commit(ctx, tx.Events()); err != nil {
			return err
		}
		if err := tx.Signing().PutKey(ctx, signing.StoredKey{KID: "marker", Alg: "ES256"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if n := tr.Pending(s.StreamID); n != 0 || len(storedKeys(t, st)) != 1 {
		t.Fatalf("a failed unit of work left %d SETs and %d keys", n, len(storedKeys(t, st)))
	}
	streams := 0
	update(t, st, func(ctx context.Context, tx storage.Tx) error {
		var err error
		if streams, err = em.Commit(ctx, tx.Events()); err != nil {
			return err
		}
		return tx.Signing().PutKey(ctx, signing.StoredKey{KID: "marker", Alg: "ES256"})
	})
	em.Sent()
	if n := tr.Pending(s.StreamID); n != 1 || streams != 1 || len(storedKeys(t, st)) != 2 {
		t.Fatalf("committed unit of work: %d SETs to %d streams, %d keys", n, streams, len(storedKeys(t, st)))
	}
}
