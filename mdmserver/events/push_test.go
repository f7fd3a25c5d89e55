package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/halemdm/hale/mdmserver/events"
	"github.com/halemdm/hale/posture"
)

func TestPushDeliversSignedSET(t *testing.T) {
	f := newFixture(t)
	rc := newReceiver(t, nil)
	run(t, f.tr) // the stream is created after Run: its deliverer must start on creation
	s := f.pushStream(t, rc.srv.URL+"/events", func(c *events.Config) { c.Delivery.AuthorizationHeader = "Bearer receiver-secret" })

	emit(t, f.tr, complianceEvent("dev-1"))
	waitFor(t, "delivery", func() bool { return len(rc.got()) == 1 && f.tr.Pending(s.StreamID) == 0 })

	got := rc.got()[0]
	if ct := got.header.Get("Content-Type"); ct != "application/secevent+jwt" {
		t.Errorf("Content-Type = %q", ct)
	}
	if a := got.header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept = %q", a)
	}
	if a := got.header.Get("Authorization"); a != "Bearer receiver-secret" {
		t.Errorf("Authorization = %q", a)
	}
	c := f.signer.verify(t, got.body)
	if c.Issuer != testIssuer || c.Audience != "https://chat.example" || c.IssuedAt != testNow.Unix() || c.TXN != "chg_1" {
		t.Errorf("claims = %+v", c)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(c.ID) {
		t.Errorf("jti %q is not 128-bit hex", c.ID)
	}
	if c.SubID != (posture.SubjectID{Format: "opaque", ID: "dev-1"}) {
		t.Errorf("sub_id = %+v", c.SubID)
	}
	if len(c.Events) != 1 {
		t.Fatalf("events = %v", c.Events)
	}
	var ev posture.CAEPEvent
	if err := json.Unmarshal(c.Events[posture.EventComplianceChange], &ev); err != nil {
		t.Fatal(err)
	}
	want := posture.CAEPEvent{
		EventTimestamp:   testNow.Add(-time.Minute).Unix(),
		InitiatingEntity: "policy",
		ReasonAdmin:      map[string]string{"en": "FileVault is off"},
		PreviousStatus:   "compliant",
		CurrentStatus:    "not-compliant",
		ReasonCode:       "encryption_off",
	}
	if ev.EventTimestamp != want.EventTimestamp || ev.InitiatingEntity != want.InitiatingEntity ||
		ev.ReasonAdmin["en"] != want.ReasonAdmin["en"] || ev.PreviousStatus != want.PreviousStatus ||
		ev.CurrentStatus != want.CurrentStatus || ev.ReasonCode != want.ReasonCode {
		t.Errorf("event = %+v, want %+v", ev, want)
	}

	// The deliverer records the delivery once the receiver's answer is in, which may be just
	// after the receiver has the SET.
	var st events.Stream
	waitFor(t, "the delivery recorded", func() bool {
		var err error
		if st, err = f.tr.GetStream(context.Background(), rx, s.StreamID); err != nil {
			t.Fatal(err)
		}
		return !st.LastDeliveredAt.IsZero()
	})
	if st.LastError != "" || st.Pending != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestPushRetriesUntilAccepted(t *testing.T) {
	f := newFixture(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			w.WriteHeader(http.StatusInternalServerError)
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusBadRequest) // not RFC 8935: a broken receiver, not a verdict
			_, _ = w.Write([]byte("bad gateway config"))
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	s := f.pushStream(t, rc.srv.URL)
	emit(t, f.tr, revokedEvent("dev-1"), complianceEvent("dev-2"))
	run(t, f.tr)
	waitFor(t, "delivery after retries", func() bool { return f.tr.Pending(s.StreamID) == 0 })

	got := rc.got()
	if len(got) != 5 {
		t.Fatalf("receiver got %d requests, want 4 attempts of the first SET and 1 of the second", len(got))
	}
	first := f.signer.verify(t, got[0].body).ID
	for i := 1; i < 4; i++ {
		if id := f.signer.verify(t, got[i].body).ID; id != first {
			t.Errorf("attempt %d sent jti %s, want the retried %s (order kept)", i, id, first)
		}
	}
	second := f.signer.verify(t, got[4].body)
	if second.SubID.ID != "dev-2" {
		t.Errorf("second SET is about %s, want dev-2", second.SubID.ID)
	}
	st, _ := f.tr.GetStream(context.Background(), rx, s.StreamID)
	if !strings.Contains(st.LastError, "400") || st.LastErrorAt.IsZero() || st.LastDeliveredAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
}

func TestHangingReceiverDoesNotDelayOtherStreams(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	hung := make(chan struct{}, 10)
	slow := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before slow.srv.Close, which waits for handlers
	fast := newReceiver(t, nil)
	a := f.pushStream(t, slow.srv.URL)
	b := f.pushStream(t, fast.srv.URL)
	run(t, f.tr)

	emit(t, f.tr, revokedEvent("dev-1"))
	select { // stream A's receiver is now holding its request
	case <-hung:
	case <-time.After(5 * time.Second):
		t.Fatal("stream A's receiver was never called")
	}
	emit(t, f.tr, revokedEvent("dev-2"))
	waitFor(t, "stream B delivery while A hangs", func() bool { return len(fast.got()) == 2 && f.tr.Pending(b.StreamID) == 0 })
	if n := f.tr.Pending(a.StreamID); n != 2 {
		t.Errorf("stream A pending = %d, want 2 (nothing delivered to a hanging receiver)", n)
	}
}

func TestPushRejectedIsDropped(t *testing.T) {
	f := newFixture(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"err":"invalid_audience","description":"not for us"}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	s := f.pushStream(t, rc.srv.URL)
	emit(t, f.tr, revokedEvent("dev-1"), revokedEvent("dev-2"))
	run(t, f.tr)
	waitFor(t, "outbox drained", func() bool { return f.tr.Pending(s.StreamID) == 0 })

	got := rc.got()
	if len(got) != 2 {
		t.Fatalf("receiver got %d requests, want 2 (the rejected SET is not retried)", len(got))
	}
	if a, b := f.signer.verify(t, got[0].body), f.signer.verify(t, got[1].body); a.SubID.ID != "dev-1" || b.SubID.ID != "dev-2" {
		t.Errorf("delivered %s then %s", a.SubID.ID, b.SubID.ID)
	}
	st, _ := f.tr.GetStream(context.Background(), rx, s.StreamID)
	// The RFC 8935 code, not the receiver's free text: what an endpoint says is not repeated.
	if st.LastError != "receiver rejected the SET: invalid_audience" {
		t.Errorf("LastError = %q", st.LastError)
	}
}

func TestOutboxSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	rc := newReceiver(t, nil)
	s := f.pushStream(t, rc.srv.URL)
	emit(t, f.tr, revokedEvent("dev-1"))
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}

	db := openDB(t, f.path)
	t.Cleanup(func() { db.Close() })
	tr, err := events.New(streams(db), f.signer, testIssuer, testKey(t), defaultOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if n := tr.Pending(s.StreamID); n != 1 {
		t.Fatalf("pending after restart = %d, want 1", n)
	}
	if len(rc.got()) != 0 {
		t.Fatal("delivered without Run")
	}
	run(t, tr)
	waitFor(t, "delivery after restart", func() bool { return len(rc.got()) == 1 && tr.Pending(s.StreamID) == 0 })
	if c := f.signer.verify(t, rc.got()[0].body); c.SubID.ID != "dev-1" {
		t.Errorf("delivered %+v", c)
	}
}

func TestDeleteStreamStopsDeliveryAndDropsOutbox(t *testing.T) {
	f := newFixture(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	s := f.pushStream(t, rc.srv.URL)
	keep := f.pollStream(t)
	run(t, f.tr)
	emit(t, f.tr, revokedEvent("dev-1"))
	waitFor(t, "a failed attempt", func() bool { return len(rc.got()) > 0 })

	if err := f.tr.DeleteStream(context.Background(), rx, s.StreamID); err != nil {
		t.Fatal(err)
	}
	if n := f.tr.Pending(s.StreamID); n != 0 {
		t.Errorf("pending after delete = %d", n)
	}
	if n := f.tr.Pending(keep.StreamID); n != 1 {
		t.Errorf("other stream's outbox = %d, want 1", n)
	}
	if _, err := f.tr.GetStream(context.Background(), rx, s.StreamID); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("GetStream after delete: %v", err)
	}
	if err := f.tr.DeleteStream(context.Background(), rx, s.StreamID); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	// The deliverer stops: the receiver stops being called.
	waitFor(t, "deliverer to stop", func() bool {
		n := len(rc.got())
		time.Sleep(30 * time.Millisecond) // several backoff periods
		return len(rc.got()) == n
	})
}

func TestBackoffBounds(t *testing.T) {
	f := newFixture(t, events.WithBackoff(100*time.Millisecond, time.Second))
	for attempt := range 20 {
		d := f.tr.Backoff(attempt)
		want := min(100*time.Millisecond<<min(attempt, 10), time.Second)
		if d < want/2 || d > want {
			t.Errorf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
		}
	}
}
