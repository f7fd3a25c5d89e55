package events_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/internal/pgtest"
	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/mdmserver/storage"
	"github.com/halemdm/hale/mdmserver/storage/kvstore"
	"github.com/halemdm/hale/mdmserver/storage/pgstore"
)

// second is another server's Transmitter on the fixture's store (same signer, key and options).
func (f *fixture) second(t testing.TB, opts ...events.Option) *events.Transmitter {
	t.Helper()
	tr, err := events.New(streams(f.db), f.signer, testIssuer, testKey(t), append(defaultOpts(t), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// outboxKeys returns the stored keys of a stream's outbox: what the change feed names.
func (f *fixture) outboxKeys(t testing.TB, streamID string) [][]byte {
	t.Helper()
	var keys [][]byte
	err := f.db.View(context.Background(), func(tx storage.Tx) error {
		q, err := tx.Events().Queued(context.Background(), streamID, 0)
		for _, e := range q {
			keys = append(keys, events.OutboxKey(streamID, e.Seq))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// quiet fails the test when cond holds at any time during d.
func quiet(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			t.Fatalf("%s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOutboxChangedWakesTheDelivererOfAnotherServersEmission(t *testing.T) {
	f := newFixture(t) // server A: the one that runs Run
	b := f.second(t)   // server B: emits, runs no deliverer
	rc := newReceiver(t, nil)
	s := f.pushStream(t, rc.srv.URL+"/events")
	run(t, f.tr)
	waitFor(t, "A's deliverer waiting", func() bool { return f.tr.PollWaiting(s.StreamID) })

	emit(t, b, complianceEvent("dev-1"))
	// B's Emit signals B's deliverers, of which there are none: A's waits on.
	quiet(t, "A delivered B's SET without being told", 300*time.Millisecond, func() bool { return len(rc.got()) > 0 })
	if n := f.tr.Pending(s.StreamID); n != 1 {
		t.Fatalf("pending = %d, want 1", n)
	}

	keys := f.outboxKeys(t, s.StreamID)
	if len(keys) != 1 {
		t.Fatalf("outbox keys = %q", keys)
	}
	f.tr.OutboxChanged(append(keys, []byte("junk"), nil, []byte("ss_x\x00short"))...)
	waitFor(t, "delivery after OutboxChanged", func() bool { return len(rc.got()) == 1 && f.tr.Pending(s.StreamID) == 0 })
	if c := f.signer.verify(t, rc.got()[0].body); c.SubID.ID != "dev-1" {
		t.Errorf("delivered SET is about %q", c.SubID.ID)
	}
}

func TestStreamsChangedStartsTheDelivererOfAnotherServersStream(t *testing.T) {
	f := newFixture(t)
	b := f.second(t)
	rc := newReceiver(t, nil)
	run(t, f.tr)
	waitFor(t, "A's Run reading the streams", func() bool { return f.tr.Reconciles() > 0 })

	s, err := b.CreateStream(context.Background(), rx, events.Config{
		Delivery: events.Delivery{Method: events.MethodPush, EndpointURL: rc.srv.URL + "/events"}, Audience: "https://chat.example"})
	if err != nil {
		t.Fatal(err)
	}
	emit(t, f.tr, complianceEvent("dev-1")) // A emits to the stored stream, which A's Run has not seen
	quiet(t, "A delivered to a stream its Run was not told of", 300*time.Millisecond, func() bool { return len(rc.got()) > 0 })

	f.tr.StreamsChanged(s.StreamID)
	waitFor(t, "delivery after StreamsChanged", func() bool { return len(rc.got()) == 1 && f.tr.Pending(s.StreamID) == 0 })

	// Paused on B: A's Run stops the deliverer once told, and SETs wait.
	if _, err := b.SetStatus(context.Background(), rx, s.StreamID, events.StatusPaused, ""); err != nil {
		t.Fatal(err)
	}
	n := f.tr.Reconciles()
	f.tr.StreamsChanged(s.StreamID)
	waitFor(t, "A's Run reconciling", func() bool { return f.tr.Reconciles() > n })
	emit(t, b, revokedEvent("dev-1"))
	f.tr.OutboxChanged(f.outboxKeys(t, s.StreamID)...)
	quiet(t, "a paused stream was delivered", 200*time.Millisecond, func() bool { return len(rc.got()) > 1 })
}

func TestOutboxChangedWakesAPollOnAnotherServer(t *testing.T) {
	f := newFixture(t)
	b := f.second(t, events.WithPollWait(30*time.Second)) // server B holds the receiver's long poll
	s := f.pollStream(t)
	done := make(chan time.Duration, 1)
	var got int
	go func() {
		start := time.Now()
		rec := poll(t, b, s.StreamID, `{"returnImmediately":false}`)
		got = len(decodePoll(t, rec).SETs)
		done <- time.Since(start)
	}()
	waitFor(t, "the poll waiting on B", func() bool { return b.PollWaiting(s.StreamID) })
	emit(t, f.tr, complianceEvent("dev-1")) // on A
	select {
	case <-done:
		t.Fatal("B's poll answered before it was told of A's emission")
	case <-time.After(300 * time.Millisecond):
	}
	b.OutboxChanged(f.outboxKeys(t, s.StreamID)...)
	select {
	case took := <-done:
		if got != 1 || took >= 30*time.Second {
			t.Fatalf("poll answered %d SETs after %s", got, took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("B's poll did not answer after OutboxChanged")
	}
}

func TestVerificationIntervalHoldsAcrossServers(t *testing.T) {
	f := newFixture(t, events.WithMinVerificationInterval(time.Hour))
	b := f.second(t, events.WithMinVerificationInterval(time.Hour))
	s := f.pollStream(t)
	if err := f.tr.Verify(context.Background(), rx, s.StreamID, "one"); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(context.Background(), rx, s.StreamID, "two"); !errors.Is(err, events.ErrTooSoon) {
		t.Fatalf("verification on B right after A's: %v, want ErrTooSoon", err)
	}
	if n := f.tr.Pending(s.StreamID); n != 1 {
		t.Fatalf("pending = %d, want the one verification SET", n)
	}
}

func FuzzOutboxStream(f *testing.F) {
	f.Add([]byte("ss_0123\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07"))
	f.Add(events.OutboxKey("ss_a", 1<<60+3))
	f.Add([]byte("\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, key []byte) {
		id, ok := events.OutboxStream(key)
		if !ok {
			return
		}
		if id == "" || bytes.IndexByte([]byte(id), 0) >= 0 || !bytes.HasPrefix(key, append([]byte(id), 0)) || len(key) != len(id)+17 {
			t.Fatalf("OutboxStream(%q) = %q", key, id)
		}
		if id2, ok := events.OutboxStream(events.OutboxKey(id, 42)); !ok || id2 != id {
			t.Fatalf("OutboxStream(OutboxKey(%q)) = %q, %v", id, id2, ok)
		}
	})
}

func TestDeliveryStateIsTheSameOnEveryServer(t *testing.T) {
	f := newFixture(t)
	b := f.second(t)
	rc := newReceiver(t, nil)
	push := f.pushStream(t, rc.srv.URL+"/events")
	run(t, f.tr) // push delivery runs on A only
	emit(t, f.tr, complianceEvent("dev-1"))
	waitFor(t, "delivery", func() bool { return f.tr.Pending(push.StreamID) == 0 })
	waitFor(t, "B showing A's delivery", func() bool {
		s, err := b.GetStream(context.Background(), rx, push.StreamID)
		return err == nil && s.LastDeliveredAt.Equal(testNow) && s.LastError == ""
	})

	// A poll receiver rejects a SET through B: A shows it.
	poller := f.pollStream(t)
	emit(t, f.tr, complianceEvent("dev-2"))
	got := decodePoll(t, poll(t, b, poller.StreamID, `{"returnImmediately":true}`))
	var jti string
	for j := range got.SETs {
		jti = j
	}
	poll(t, b, poller.StreamID, `{"returnImmediately":true,"setErrs":{"`+jti+`":{"err":"invalid_key","description":"unknown kid"}}}`)
	s, err := f.tr.GetStream(context.Background(), rx, poller.StreamID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.LastError, "invalid_key") || !s.LastErrorAt.Equal(testNow) || s.Pending != 0 {
		t.Fatalf("A shows %+v after B took the rejection", s)
	}
}

// The change feed's keys are what OutboxChanged and StreamsChanged take: server A runs push
// delivery and follows the PostgreSQL change feed; a stream created and an event emitted on
// server B reach the receiver through it.
func TestPushDeliveryFollowsThePostgresChangeFeed(t *testing.T) {
	pgtest.ServerURL(t)
	dsn := pgtest.NewDatabase(t) // LISTEN channels are per database
	signer := newTestSigner(t)
	var trs [2]*events.Transmitter
	var stA *pgstore.Store
	for i := range trs {
		st, err := pgstore.Open(context.Background(), dsn, pgstore.WithLogger(slog.New(slog.DiscardHandler)),
			pgstore.WithChangeFeed(kvstore.BucketEventStreams, kvstore.BucketEventOutbox))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if i == 0 {
			stA = st
		}
		if trs[i], err = events.New(streams(st), signer, testIssuer, testKey(t), defaultOpts(t)...); err != nil {
			t.Fatal(err)
		}
	}
	a, b := trs[0], trs[1]
	run(t, a)

	ctx, cancel := context.WithCancel(context.Background())
	from, err := stA.FeedPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = stA.Follow(ctx, from, pgstore.Follower{
			Apply: func(_ context.Context, changes []pgstore.Change) error {
				var outbox [][]byte
				var streams []string
				for _, c := range changes {
					switch c.Bucket {
					case string(kvstore.BucketEventOutbox):
						outbox = append(outbox, c.Key)
					case string(kvstore.BucketEventStreams):
						streams = append(streams, string(c.Key))
					}
				}
				if len(streams) > 0 {
					a.StreamsChanged(streams...)
				}
				a.OutboxChanged(outbox...)
				return nil
			},
			Resync: func(context.Context) error { return nil },
			Poll:   time.Minute, // the notification, not the poll, must bring it
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	rc := newReceiver(t, nil)
	s, err := b.CreateStream(context.Background(), rx, events.Config{
		Delivery: events.Delivery{Method: events.MethodPush, EndpointURL: rc.srv.URL + "/events"}, Audience: "https://chat.example"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's deliverer for B's stream", func() bool { return a.PollWaiting(s.StreamID) })
	emit(t, b, complianceEvent("dev-1"))
	waitFor(t, "delivery of B's emission by A", func() bool { return len(rc.got()) == 1 && a.Pending(s.StreamID) == 0 })
	if c := signer.verify(t, rc.got()[0].body); c.SubID.ID != "dev-1" {
		t.Errorf("delivered SET is about %q", c.SubID.ID)
	}
}
